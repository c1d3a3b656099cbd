"""Per-task metrics (scikit-learn), majority baselines and the collapse flag."""

from __future__ import annotations

from collections.abc import Mapping
from typing import Any

import numpy as np
from sklearn import metrics as skm

from mtl_models.tasks import TaskKind, TaskSpec

# A task has collapsed when this share of its predictions is one class while its labels are
# spread out (their most common class is below the same share).
COLLAPSE_SHARE = 0.95
# For regression: predictions whose spread is below this fraction of the labels' spread.
COLLAPSE_STD_RATIO = 0.05


def _mode(values: np.ndarray) -> float:
    uniq, counts = np.unique(values, return_counts=True)
    return float(uniq[np.argmax(counts)])


def _top_share(values: np.ndarray) -> float:
    _, counts = np.unique(values, return_counts=True)
    return float(counts.max() / counts.sum())


def _discrete_scores(task: TaskSpec, y: np.ndarray, p: np.ndarray) -> dict[str, float]:
    if task.kind is TaskKind.ORDINAL:
        # All levels passed explicitly: the quadratic penalty is by level distance, even when
        # a level (often the rare 5) is absent from this split.
        levels = list(range(task.n_classes))  # type: ignore[arg-type]
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
    return {
        "accuracy": float(skm.accuracy_score(y, p)),
        "balanced_accuracy": float(skm.balanced_accuracy_score(y, p)),
        "macro_f1": float(skm.f1_score(y, p, average="macro", zero_division=0)),
    }


def _regression_scores(y: np.ndarray, p: np.ndarray) -> dict[str, float]:
    return {
        "mae": float(skm.mean_absolute_error(y, p)),
        "rmse": float(np.sqrt(skm.mean_squared_error(y, p))),
        "r2": float(skm.r2_score(y, p)) if len(y) > 1 else 0.0,
    }


def task_metrics(
    task: TaskSpec,
    y_true: np.ndarray,
    y_pred: np.ndarray,
    majority: float | None = None,
) -> dict[str, Any]:
    """Metrics for one task over the samples where it is labelled.

    ``majority`` is the constant the majority baseline predicts (the training split's most
    common class, or its mean for regression); by default it is taken from ``y_true``.
    Returns ``kind``, ``score`` (the kind's primary metric), ``majority_baseline`` (that
    metric for the constant predictor), ``collapsed``, ``n`` and the kind's metrics.
    """
    y_true = np.asarray(y_true, dtype=float)
    y_pred = np.asarray(y_pred, dtype=float)
    present = ~np.isnan(y_true)
    y, p = y_true[present], y_pred[present]
    result: dict[str, Any] = {"kind": task.kind.value, "n": int(present.sum())}
    if len(y) == 0:
        return result | {
            "score": float("nan"),
            "majority_baseline": float("nan"),
            "collapsed": False,
        }

    if task.is_discrete:
        majority = _mode(y) if majority is None else majority
        scores = _discrete_scores(task, y, p)
        baseline = _discrete_scores(task, y, np.full_like(y, majority))
        collapsed = _top_share(p) >= COLLAPSE_SHARE and _top_share(y) < COLLAPSE_SHARE
        result["majority_accuracy"] = baseline["accuracy"]
    else:
        majority = float(np.mean(y)) if majority is None else majority
        scores = _regression_scores(y, p)
        baseline = _regression_scores(y, np.full_like(y, majority))
        collapsed = bool(np.std(y) > 0 and np.std(p) < COLLAPSE_STD_RATIO * np.std(y))
    primary = task.primary_metric
    result |= {
        "score": scores[primary],
        "majority_baseline": baseline[primary],
        "collapsed": bool(collapsed),
    }
    result |= scores
    return result


def confusion(task: TaskSpec, y_true: np.ndarray, y_pred: np.ndarray) -> np.ndarray:
    """``[K, K]`` counts (rows: true class) over the labelled samples of a discrete task."""
    assert task.n_classes is not None
    present = ~np.isnan(np.asarray(y_true, dtype=float))
    return skm.confusion_matrix(
        np.asarray(y_true)[present].astype(int),
        np.asarray(y_pred)[present].astype(int),
        labels=list(range(task.n_classes)),
    )


def summarize(per_task: Mapping[str, Mapping[str, Any]]) -> dict[str, Any]:
    """The ``summary`` block of ``metrics.json``: mean primary score and collapsed tasks."""
    scores = [m["score"] for m in per_task.values() if not np.isnan(m["score"])]
    return {
        "mean_score": float(np.mean(scores)) if scores else float("nan"),
        "collapsed_tasks": sorted(name for name, m in per_task.items() if m["collapsed"]),
        "tasks_beating_majority": sorted(
            name for name, m in per_task.items() if m["score"] > m["majority_baseline"]
        ),
    }


def majority_labels(labels: np.ndarray, tasks: list[TaskSpec]) -> dict[str, float]:
    """What a majority baseline predicts per task: the most common class, or the mean."""
    out = {}
    for t, task in enumerate(tasks):
        values = labels[:, t][~np.isnan(labels[:, t])]
        if len(values):
            out[task.name] = _mode(values) if task.is_discrete else float(values.mean())
    return out


def delta_m(
    multi_task: Mapping[str, float],
    single_task: Mapping[str, float],
    lower_is_better: Mapping[str, bool] | None = None,
) -> tuple[float, dict[str, float]]:
    """Δm (Maninis et al., CVPR 2019): the mean relative gain of the multi-task model over
    single-task models, ``(1/T) Σ_t (−1)^{l_t} (M_mtl,t − M_st,t) / M_st,t`` with ``l_t = 1``
    where lower is better. Returns Δm and each task's relative gain (positive = MTL better).

    The primary ``score`` of every kind is higher-is-better, so ``lower_is_better`` defaults
    to none; pass it for losses or errors.
    """
    if set(multi_task) != set(single_task):
        raise ValueError(
            f"Δm needs the same tasks on both sides, got {sorted(multi_task)} "
            f"and {sorted(single_task)}"
        )
    if not multi_task:
        raise ValueError("Δm needs at least one task")
    lower = lower_is_better or {}
    gains = {}
    for task, mtl in multi_task.items():
        base = single_task[task]
        if base == 0:
            raise ValueError(f"Δm is undefined for {task}: its single-task score is 0")
        sign = -1.0 if lower.get(task, False) else 1.0
        gains[task] = sign * (mtl - base) / abs(base)
    return float(np.mean(list(gains.values()))), gains
