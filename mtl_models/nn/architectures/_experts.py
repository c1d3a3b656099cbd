"""What the gated mixtures share: experts copied from the backbone's blocks after the split
point, a softmax gate per task, and a record of the gate weights (which experts each task
uses: a second view of which tasks share)."""

from __future__ import annotations

from collections.abc import Callable, Sequence

import torch
from torch import Tensor, nn

from mtl_models.nn.architectures._base import Inputs, MultiTaskModel, task_key
from mtl_models.nn.backbones import Backbone
from mtl_models.tasks import TaskSpec


def softmax_gate(width: int, experts: int) -> nn.Module:
    """A gate: a linear map of the gate's input to one weight per expert, summing to 1."""
    return nn.Sequential(nn.Linear(width, experts), nn.Softmax(dim=-1))


def positive(name: str, value: int) -> int:
    if value < 1:
        raise ValueError(f"{name} must be >= 1, got {value}")
    return value


class GatedModel(MultiTaskModel):
    """A multi-task model whose tasks mix expert outputs through gates."""

    def __init__(
        self,
        tasks: Sequence[TaskSpec],
        backbone: Backbone,
        shared_depth: int | str | None = None,
        head_hidden: int = 64,
        dropout: float = 0.0,
        example: Inputs | None = None,
    ):
        super().__init__(tasks, backbone, shared_depth, head_hidden, dropout, example)
        self._gates_seen: dict[str, Tensor] = {}

    @classmethod
    def split_problem(cls, shared: int, total: int) -> str | None:
        if shared >= total:
            return (
                "its experts are copies of the backbone blocks after the split point, and "
                f"model.shared_depth shares all {total}; split earlier (a lower "
                "model.shared_depth)"
            )
        return None

    def experts_of(self, backbone: Backbone, n: int, start: int, stop: int) -> nn.ModuleList:
        """``n`` independently initialised copies of the backbone's blocks ``start:stop``."""
        return nn.ModuleList(self.copy_blocks(backbone, start, stop) for _ in range(n))

    def per_task(self, build: Callable[[], nn.Module]) -> nn.ModuleDict:
        """One new module per task, by the task's module key."""
        return nn.ModuleDict({task_key(name): build() for name in self.task_names})

    def record(self, task: str, weights: Tensor) -> None:
        """Keep the batch's mean gate weights of ``task`` (read by ``gate_weights``)."""
        self._gates_seen[task] = weights.detach().float().mean(0)

    def gate_weights(self) -> dict[str, Tensor] | None:
        return dict(self._gates_seen) if self._gates_seen else None


def stack(outputs: Sequence[Tensor]) -> Tensor:
    """Expert outputs ``[B, ...]`` -> ``[B, E, ...]``."""
    return torch.stack(list(outputs), dim=1)
