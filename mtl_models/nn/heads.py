"""Task heads: an MLP per task; its loss and decoding follow from the task's kind."""

from __future__ import annotations

import torch
from torch import Tensor, nn

from mtl_models.kinds import Decoded
from mtl_models.tasks import TaskSpec

__all__ = ["Decoded", "TaskHead", "build_head"]


class TaskHead(nn.Module):
    """An MLP from shared features to one task's raw outputs, plus that task's loss/decoding."""

    def __init__(self, task: TaskSpec, in_features: int, hidden: int = 64, dropout: float = 0.0):
        super().__init__()
        self.task = task
        self.kind = task.kind_plugin
        out = self.kind.n_outputs(task)
        if hidden > 0:
            self.net: nn.Module = nn.Sequential(
                nn.Linear(in_features, hidden),
                nn.ReLU(inplace=True),
                nn.Dropout(dropout),
                nn.Linear(hidden, out),
            )
        else:
            self.net = nn.Sequential(nn.Dropout(dropout), nn.Linear(in_features, out))
        weights = None if task.class_weights is None else torch.tensor(task.class_weights)
        # not in the state dict: the weights live in the task spec saved beside it
        self.class_weights: Tensor | None
        self.register_buffer("class_weights", weights, persistent=False)

    @property
    def n_outputs(self) -> int:
        return self.kind.n_outputs(self.task)

    def forward(self, features: Tensor) -> Tensor:
        return self.net(features)

    def loss(self, outputs: Tensor, target: Tensor, mask: Tensor | None = None) -> Tensor:
        """Mean loss over the samples ``mask`` keeps (all without one); ``target`` is float
        ``[B]`` and must hold a valid label wherever ``mask`` is 0 too (any class will do)."""
        return self.kind.loss(self.task, outputs, target, self.class_weights, mask)

    def decode(self, outputs: Tensor) -> Decoded:
        return self.kind.decode(self.task, outputs)


def build_head(task: TaskSpec, in_features: int, hidden: int, dropout: float) -> TaskHead:
    """The output width, loss and decoding follow from the task's kind; users never pick them."""
    return TaskHead(task, in_features, hidden, dropout)
