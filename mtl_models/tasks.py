"""Task specifications: what each label is and how it is learned and scored."""

from __future__ import annotations

import math
from dataclasses import asdict, dataclass
from enum import StrEnum
from typing import Any

import numpy as np


class TaskKind(StrEnum):
    CLASSIFICATION = "classification"
    BINARY = "binary"
    ORDINAL = "ordinal"
    REGRESSION = "regression"


# The one number per task that tuning, promotion and summaries compare (higher is better).
PRIMARY_METRIC: dict[TaskKind, str] = {
    TaskKind.CLASSIFICATION: "balanced_accuracy",
    TaskKind.BINARY: "balanced_accuracy",
    TaskKind.ORDINAL: "qwk",
    TaskKind.REGRESSION: "r2",
}


@dataclass(frozen=True)
class TaskSpec:
    """One task: a name, its label column, its kind and (for discrete kinds) its class count.

    Labels live in a float array with NaN for "missing"; a missing label masks the task for
    that sample in the loss and in the metrics. Regression targets are standardised with
    ``target_mean``/``target_std`` (fitted on the training split) and predicted in original units.
    """

    name: str
    kind: TaskKind
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
        object.__setattr__(self, "kind", TaskKind(self.kind))
        if self.classes is not None:
            object.__setattr__(self, "classes", tuple(str(c) for c in self.classes))
            if self.kind is TaskKind.REGRESSION or len(self.classes) != (
                self.n_classes or len(self.classes)
            ):
                raise ValueError(
                    f"task '{self.name}': classes {list(self.classes)} do not match "
                    f"a {self.kind.value} task with n_classes {self.n_classes}"
                )
        if self.class_weights is not None:
            object.__setattr__(self, "class_weights", tuple(float(w) for w in self.class_weights))
        if self.column is None:
            object.__setattr__(self, "column", self.name)
        if self.kind is TaskKind.BINARY:
            if self.n_classes not in (None, 2):
                raise ValueError(f"task '{self.name}': a binary task has 2 classes")
            object.__setattr__(self, "n_classes", 2)
        elif self.kind in (TaskKind.CLASSIFICATION, TaskKind.ORDINAL):
            if self.n_classes is None or self.n_classes < 2:
                raise ValueError(
                    f"task '{self.name}': a {self.kind.value} task needs n_classes >= 2"
                )
        elif self.n_classes is not None:
            raise ValueError(f"task '{self.name}': a regression task has no n_classes")
        if not (math.isfinite(self.target_std) and self.target_std > 0):
            raise ValueError(f"task '{self.name}': target_std must be positive and finite")
        if self.class_weights is not None:
            if self.kind is TaskKind.REGRESSION:
                raise ValueError(f"task '{self.name}': a regression task has no class weights")
            if len(self.class_weights) != self.n_classes or not all(
                math.isfinite(w) and w >= 0 for w in self.class_weights
            ):
                raise ValueError(
                    f"task '{self.name}': class_weights needs {self.n_classes} values >= 0, "
                    f"got {list(self.class_weights)}"
                )
        if not (math.isfinite(self.focal_gamma) and self.focal_gamma >= 0) or (
            self.focal_gamma and self.kind is TaskKind.REGRESSION
        ):
            raise ValueError(
                f"task '{self.name}': focal_gamma must be >= 0, and 0 for a regression task"
            )

    @property
    def is_discrete(self) -> bool:
        return self.kind is not TaskKind.REGRESSION

    @property
    def class_names(self) -> tuple[str, ...]:
        """How to show each class: its name, or its index when the labels are integers."""
        if self.classes is not None:
            return self.classes
        return tuple(str(k) for k in range(self.n_classes or 0))

    @property
    def primary_metric(self) -> str:
        return PRIMARY_METRIC[self.kind]

    def invalid_label_rows(self, labels: np.ndarray) -> np.ndarray:
        """Indices of present labels that this task cannot accept (missing labels are fine)."""
        labels = np.asarray(labels, dtype=float)
        present = ~np.isnan(labels)
        if not self.is_discrete:
            return np.flatnonzero(present & ~np.isfinite(labels))
        assert self.n_classes is not None
        bad = present & ((labels != np.round(labels)) | (labels < 0) | (labels >= self.n_classes))
        return np.flatnonzero(bad)

    def expected_labels(self) -> str:
        """Human-readable description of a valid label, for error messages."""
        if self.classes is not None:
            return f"one of {list(self.classes)} or empty"
        if self.is_discrete:
            return f"an integer 0..{self.n_classes - 1} or empty"  # type: ignore[operator]
        return "a finite number or empty"

    def to_dict(self) -> dict[str, Any]:
        data = asdict(self)
        data["kind"] = self.kind.value
        return data

    @classmethod
    def from_dict(cls, data: dict[str, Any]) -> TaskSpec:
        return cls(**data)
