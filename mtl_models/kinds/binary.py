"""``binary``: two classes, one logit and binary cross-entropy."""

from __future__ import annotations

from collections.abc import Mapping
from typing import TYPE_CHECKING, ClassVar

import torch
from torch import Tensor

from mtl_models.kinds._base import KINDS, Decoded
from mtl_models.kinds._discrete import DiscreteKind
from mtl_models.losses import sigmoid_loss

if TYPE_CHECKING:
    from mtl_models.tasks import TaskSpec


@KINDS.register("binary")
class Binary(DiscreteKind):
    """One logit and BCE: a softmax over a single unit would always output 1."""

    default_n_classes: ClassVar[int | None] = 2
    sensitivity: ClassVar[Mapping[str, float]] = {"blur": 9, "noise": 0.2, "crop": 0.5}

    def check_n_classes(self, kind: str, n_classes: int | None) -> int:
        if n_classes not in (None, 2):
            raise ValueError(f"a {kind} task has 2 classes")
        return 2

    def n_outputs(self, task: TaskSpec) -> int:
        return 1

    def loss(
        self,
        task: TaskSpec,
        outputs: Tensor,
        target: Tensor,
        class_weights: Tensor | None = None,
        mask: Tensor | None = None,
    ) -> Tensor:
        return sigmoid_loss(outputs.squeeze(1), target, class_weights, task.focal_gamma, mask)

    def decode(self, task: TaskSpec, outputs: Tensor) -> Decoded:
        positive = torch.sigmoid(outputs.squeeze(1))
        proba = torch.stack([1.0 - positive, positive], dim=1)
        return Decoded((positive > 0.5).long(), proba)
