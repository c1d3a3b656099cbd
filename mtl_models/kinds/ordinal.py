"""``ordinal``: K ordered levels (ratings 0-5), a cumulative-link (CORN) head."""

from __future__ import annotations

from collections.abc import Mapping
from typing import TYPE_CHECKING, ClassVar

import numpy as np
from sklearn import metrics as skm
from torch import Tensor

from mtl_models.kinds._base import KINDS, Decoded
from mtl_models.kinds._discrete import DiscreteKind, n_classes_of
from mtl_models.losses import corn_loss, corn_predict, corn_probabilities

if TYPE_CHECKING:
    from mtl_models.tasks import TaskSpec


@KINDS.register("ordinal")
class Ordinal(DiscreteKind):
    """K-1 conditional logits; scored by quadratic weighted kappa."""

    primary_metric: ClassVar[str] = "qwk"
    # A rating or count (defect severity) is read from small details: a crop or an erased patch
    # can remove a defect, strong blur or noise hides small ones, and a grade read from how dark
    # or bright a defect is moves with contrast and gamma.
    sensitivity: ClassVar[Mapping[str, float]] = {
        "blur": 5,
        "noise": 0.1,
        "crop": 0,
        "erase": 0,
        "contrast": 0.15,
        "gamma": 0.15,
    }

    def n_outputs(self, task: TaskSpec) -> int:
        return n_classes_of(task) - 1

    def loss(
        self,
        task: TaskSpec,
        outputs: Tensor,
        target: Tensor,
        class_weights: Tensor | None = None,
        mask: Tensor | None = None,
    ) -> Tensor:
        return corn_loss(outputs, target, class_weights, task.focal_gamma, mask)

    def decode(self, task: TaskSpec, outputs: Tensor) -> Decoded:
        return Decoded(corn_predict(outputs), corn_probabilities(outputs))

    def scores(self, task: TaskSpec, y: np.ndarray, p: np.ndarray) -> dict[str, float]:
        # All levels passed explicitly: the quadratic penalty is by level distance, even when
        # a level (often the rare 5) is absent from this split.
        levels = list(range(n_classes_of(task)))
        qwk = (
            skm.cohen_kappa_score(y, p, weights="quadratic", labels=levels)
            if len(np.unique(np.r_[y, p])) > 1
            else 0.0
        )
        return {
            "qwk": float(np.nan_to_num(qwk)),
            "mae": float(skm.mean_absolute_error(y, p)),
            "accuracy": float(skm.accuracy_score(y, p)),
        }
