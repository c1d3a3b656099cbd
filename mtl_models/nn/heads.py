"""Task heads: the output layer, loss and decoding all follow from the task kind."""

from __future__ import annotations

from abc import ABC, abstractmethod
from typing import NamedTuple

import torch
from torch import Tensor, nn

from mtl_models._registry import Registry
from mtl_models.losses import (
    corn_loss,
    corn_predict,
    corn_probabilities,
    mse_loss,
    sigmoid_loss,
    softmax_loss,
)
from mtl_models.tasks import TaskSpec


class Decoded(NamedTuple):
    prediction: Tensor  # [B] class index (long) or value in original units (float)
    proba: Tensor | None  # [B, K] class probabilities where the kind has them


class TaskHead(nn.Module, ABC):
    """An MLP from shared features to one task's raw outputs, plus that task's loss/decoding."""

    def __init__(self, task: TaskSpec, in_features: int, hidden: int = 64, dropout: float = 0.0):
        super().__init__()
        self.task = task
        out = self.n_outputs(task)
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

    @staticmethod
    @abstractmethod
    def n_outputs(task: TaskSpec) -> int: ...

    def forward(self, features: Tensor) -> Tensor:
        return self.net(features)

    @abstractmethod
    def loss(self, outputs: Tensor, target: Tensor, mask: Tensor | None = None) -> Tensor:
        """Mean loss over the samples ``mask`` keeps (all without one); ``target`` is float
        ``[B]`` and must hold a valid label wherever ``mask`` is 0 too (any class will do)."""

    @abstractmethod
    def decode(self, outputs: Tensor) -> Decoded: ...


HEADS: Registry[TaskHead] = Registry("head")


@HEADS.register("classification")
class SoftmaxHead(TaskHead):
    @staticmethod
    def n_outputs(task: TaskSpec) -> int:
        assert task.n_classes is not None
        return task.n_classes

    def loss(self, outputs: Tensor, target: Tensor, mask: Tensor | None = None) -> Tensor:
        return softmax_loss(outputs, target, self.class_weights, self.task.focal_gamma, mask)

    def decode(self, outputs: Tensor) -> Decoded:
        proba = torch.softmax(outputs, dim=1)
        return Decoded(proba.argmax(dim=1), proba)


@HEADS.register("binary")
class SigmoidHead(TaskHead):
    """One logit and BCE: a softmax over a single unit would always output 1."""

    @staticmethod
    def n_outputs(task: TaskSpec) -> int:
        return 1

    def loss(self, outputs: Tensor, target: Tensor, mask: Tensor | None = None) -> Tensor:
        gamma = self.task.focal_gamma
        return sigmoid_loss(outputs.squeeze(1), target, self.class_weights, gamma, mask)

    def decode(self, outputs: Tensor) -> Decoded:
        positive = torch.sigmoid(outputs.squeeze(1))
        proba = torch.stack([1.0 - positive, positive], dim=1)
        return Decoded((positive > 0.5).long(), proba)


@HEADS.register("ordinal")
class CornHead(TaskHead):
    """Cumulative-link head for ordered levels (ratings 0-5): K-1 conditional logits."""

    @staticmethod
    def n_outputs(task: TaskSpec) -> int:
        assert task.n_classes is not None
        return task.n_classes - 1

    def loss(self, outputs: Tensor, target: Tensor, mask: Tensor | None = None) -> Tensor:
        return corn_loss(outputs, target, self.class_weights, self.task.focal_gamma, mask)

    def decode(self, outputs: Tensor) -> Decoded:
        return Decoded(corn_predict(outputs), corn_probabilities(outputs))


@HEADS.register("regression")
class RegressionHead(TaskHead):
    """Predicts the standardised target; decodes back to original units."""

    @staticmethod
    def n_outputs(task: TaskSpec) -> int:
        return 1

    def loss(self, outputs: Tensor, target: Tensor, mask: Tensor | None = None) -> Tensor:
        standardised = (target - self.task.target_mean) / self.task.target_std
        return mse_loss(outputs.squeeze(1), standardised, mask)

    def decode(self, outputs: Tensor) -> Decoded:
        value = outputs.squeeze(1) * self.task.target_std + self.task.target_mean
        return Decoded(value, None)


def build_head(task: TaskSpec, in_features: int, hidden: int, dropout: float) -> TaskHead:
    """The head class is chosen by the task kind; users never pick activations or losses."""
    return HEADS.get(task.kind.value)(task, in_features, hidden, dropout)
