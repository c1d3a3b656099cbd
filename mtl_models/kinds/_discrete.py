"""What the discrete kinds share: labels are class indices 0..n_classes-1."""

from __future__ import annotations

import math
from collections.abc import Mapping, Sequence
from dataclasses import replace
from typing import TYPE_CHECKING, ClassVar

import numpy as np
from sklearn import metrics as skm

from mtl_models.kinds._base import COLLAPSE_SHARE, Kind, article
from mtl_models.losses import ClassWeighting, class_weights

if TYPE_CHECKING:
    from mtl_models.tasks import TaskSpec


def mode(values: np.ndarray) -> float:
    uniq, counts = np.unique(values, return_counts=True)
    return float(uniq[np.argmax(counts)])


def top_share(values: np.ndarray) -> float:
    _, counts = np.unique(values, return_counts=True)
    return float(counts.max() / counts.sum())


def n_classes_of(task: TaskSpec) -> int:
    assert task.n_classes is not None, f"task '{task.name}' has no n_classes"
    return task.n_classes


class DiscreteKind(Kind):
    """Class-index labels: class weights, focal gamma, class names and per-class strata."""

    discrete: ClassVar[bool] = True
    primary_metric: ClassVar[str] = "balanced_accuracy"
    # The class count when a task declares none (None: the task must declare it).
    default_n_classes: ClassVar[int | None] = None

    def check(
        self,
        kind: str,
        n_classes: int | None,
        classes: Sequence[str] | None = None,
        class_weights: Sequence[float] | None = None,
        focal_gamma: float = 0.0,
    ) -> int | None:
        if classes is not None:
            if len(set(classes)) != len(classes):
                raise ValueError(f"classes must be distinct, got {list(classes)}")
            if n_classes not in (None, len(classes)):
                raise ValueError(f"n_classes {n_classes} but {len(classes)} classes are named")
            n_classes = len(classes)
        n_classes = self.check_n_classes(kind, n_classes)
        if class_weights is not None and (
            len(class_weights) != n_classes
            or not all(math.isfinite(w) and w >= 0 for w in class_weights)
        ):
            raise ValueError(
                f"class_weights needs {n_classes} values >= 0, got {list(class_weights)}"
            )
        if not (math.isfinite(focal_gamma) and focal_gamma >= 0):
            raise ValueError(f"focal_gamma must be >= 0, got {focal_gamma}")
        return n_classes

    def check_n_classes(self, kind: str, n_classes: int | None) -> int:
        """The class count, given or defaulted; at least 2."""
        n_classes = self.default_n_classes if n_classes is None else n_classes
        if n_classes is None or n_classes < 2:
            raise ValueError(f"{article(kind)} task needs n_classes >= 2")
        return n_classes

    def fit(self, task: TaskSpec, values: np.ndarray, class_weighting: ClassWeighting) -> TaskSpec:
        weights = class_weights(values, n_classes_of(task), class_weighting)
        return replace(task, class_weights=weights)

    def scores(self, task: TaskSpec, y: np.ndarray, p: np.ndarray) -> dict[str, float]:
        return {
            "accuracy": float(skm.accuracy_score(y, p)),
            "balanced_accuracy": float(skm.balanced_accuracy_score(y, p)),
            "macro_f1": float(skm.f1_score(y, p, average="macro", zero_division=0)),
        }

    def majority(self, values: np.ndarray) -> float:
        return mode(values)

    def collapsed(self, y: np.ndarray, p: np.ndarray) -> bool:
        return top_share(p) >= COLLAPSE_SHARE and top_share(y) < COLLAPSE_SHARE

    def baseline_metrics(self, baseline: Mapping[str, float]) -> dict[str, float]:
        return {"majority_accuracy": baseline["accuracy"]}

    def strata(self, task: TaskSpec, values: np.ndarray) -> np.ndarray:
        values = np.asarray(values, dtype=float)
        present = ~np.isnan(values)
        columns = [present & (values == c) for c in range(n_classes_of(task))]
        return np.stack(columns, axis=1).astype(np.int8)

    def invalid_label_rows(self, task: TaskSpec, labels: np.ndarray) -> np.ndarray:
        labels = np.asarray(labels, dtype=float)
        present = ~np.isnan(labels)
        whole = labels == np.round(labels)
        bad = present & (~whole | (labels < 0) | (labels >= n_classes_of(task)))
        return np.flatnonzero(bad)

    def expected_labels(self, task: TaskSpec) -> str:
        if task.classes is not None:
            return f"one of {list(task.classes)} or empty"
        return f"an integer 0..{n_classes_of(task) - 1} or empty"
