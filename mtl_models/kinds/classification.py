"""``classification``: K unordered classes, softmax and cross-entropy."""

from __future__ import annotations

from collections.abc import Mapping
from typing import TYPE_CHECKING, ClassVar

import torch
from torch import Tensor

from mtl_models.kinds._base import KINDS, Decoded
from mtl_models.kinds._discrete import DiscreteKind, n_classes_of
from mtl_models.losses import softmax_loss

if TYPE_CHECKING:
    from mtl_models.tasks import TaskSpec


@KINDS.register("classification")
class Classification(DiscreteKind):
    # A class survives mild degradation; an extreme crop or blur can remove the object.
    sensitivity: ClassVar[Mapping[str, float]] = {"blur": 9, "noise": 0.2, "crop": 0.5}

    def n_outputs(self, task: TaskSpec) -> int:
        return n_classes_of(task)

    def loss(
        self,
        task: TaskSpec,
        outputs: Tensor,
        target: Tensor,
        class_weights: Tensor | None = None,
        mask: Tensor | None = None,
    ) -> Tensor:
        return softmax_loss(outputs, target, class_weights, task.focal_gamma, mask)

    def decode(self, task: TaskSpec, outputs: Tensor) -> Decoded:
        proba = torch.softmax(outputs, dim=1)
        return Decoded(proba.argmax(dim=1), proba)

    def diagnosis_hint(self, task: TaskSpec) -> str | None:
        if n_classes_of(task) < 3:
            return None
        return (
            "If its classes are ordered levels, declare `kind: ordinal`: the CORN head "
            "learns one threshold at a time, which a skewed label distribution does not "
            "swamp."
        )
