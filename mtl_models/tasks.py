"""Task specifications: what each label is and how it is learned and scored."""

from __future__ import annotations

import math
from dataclasses import asdict, dataclass
from typing import Any

import numpy as np

from mtl_models.kinds import Kind, get_kind
from mtl_models.losses import ClassWeighting


@dataclass(frozen=True)
class TaskSpec:
    """One task: a name, its label column, its kind and (for discrete kinds) its class count.

    Labels live in a float array with NaN for "missing"; a missing label masks the task for
    that sample in the loss and in the metrics. Regression targets are standardised with
    ``target_mean``/``target_std`` (fitted on the training split) and predicted in original units.
    """

    name: str
    kind: str  # a name registered in mtl_models.kinds.KINDS
    n_classes: int | None = None
    column: str | None = None
    target_mean: float = 0.0
    target_std: float = 1.0
    # Loss weight per class (discrete kinds; fitted on the training split) and focal exponent.
    class_weights: tuple[float, ...] | None = None
    focal_gamma: float = 0.0
    # class names by index, when labels are written as names (served predictions use them)
    classes: tuple[str, ...] | None = None

    def __post_init__(self) -> None:
        if self.classes is not None:
            object.__setattr__(self, "classes", tuple(str(c) for c in self.classes))
        if self.class_weights is not None:
            object.__setattr__(self, "class_weights", tuple(float(w) for w in self.class_weights))
        if self.column is None:
            object.__setattr__(self, "column", self.name)
        kind = self.kind_plugin  # an unknown kind fails listing the registered ones
        try:
            n_classes = kind.check(
                self.kind, self.n_classes, self.classes, self.class_weights, self.focal_gamma
            )
        except ValueError as err:
            raise ValueError(f"task '{self.name}': {err}") from None
        object.__setattr__(self, "n_classes", n_classes)
        if not (math.isfinite(self.target_std) and self.target_std > 0):
            raise ValueError(f"task '{self.name}': target_std must be positive and finite")

    @property
    def kind_plugin(self) -> Kind:
        """The registered kind: head outputs, loss, decoding, metrics, strata, fitting."""
        return get_kind(self.kind)

    @property
    def is_discrete(self) -> bool:
        return self.kind_plugin.discrete

    @property
    def class_names(self) -> tuple[str, ...]:
        """How to show each class: its name, or its index when the labels are integers."""
        if self.classes is not None:
            return self.classes
        return tuple(str(k) for k in range(self.n_classes or 0))

    @property
    def primary_metric(self) -> str:
        return self.kind_plugin.primary_metric

    def invalid_label_rows(self, labels: np.ndarray) -> np.ndarray:
        """Indices of present labels that this task cannot accept (missing labels are fine)."""
        return self.kind_plugin.invalid_label_rows(self, np.asarray(labels, dtype=float))

    def expected_labels(self) -> str:
        """Human-readable description of a valid label, for error messages."""
        return self.kind_plugin.expected_labels(self)

    def strata(self, values: np.ndarray) -> np.ndarray:
        """``[N, C]`` int8 indicator columns of this task's labels for a stratified split."""
        return self.kind_plugin.strata(self, np.asarray(values, dtype=float))

    def to_dict(self) -> dict[str, Any]:
        return asdict(self)

    @classmethod
    def from_dict(cls, data: dict[str, Any]) -> TaskSpec:
        return cls(**data)


def fit_task(
    task: TaskSpec, train_values: np.ndarray, class_weighting: ClassWeighting = "none"
) -> TaskSpec:
    """``task`` with what its loss learns from the training labels only (NaN = missing):
    a regression target's mean and spread, a discrete task's class weights."""
    values = np.asarray(train_values, dtype=float)
    return task.kind_plugin.fit(task, values[~np.isnan(values)], class_weighting)
