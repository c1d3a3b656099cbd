"""Per-task metrics (each kind scores its own), majority baselines and summaries."""

from __future__ import annotations

from collections.abc import Mapping
from typing import Any

import numpy as np
from sklearn import metrics as skm

from mtl_models.kinds import COLLAPSE_SHARE, COLLAPSE_STD_RATIO
from mtl_models.tasks import TaskSpec

__all__ = [
    "COLLAPSE_SHARE",
    "COLLAPSE_STD_RATIO",
    "confusion",
    "delta_m",
    "majority_labels",
    "summarize",
    "task_metrics",
]


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
    result: dict[str, Any] = {"kind": task.kind, "n": int(present.sum())}
    if len(y) == 0:
        return result | {
            "score": float("nan"),
            "majority_baseline": float("nan"),
            "collapsed": False,
        }
    return result | task.kind_plugin.evaluate(task, y, p, majority)


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
            out[task.name] = task.kind_plugin.majority(values)
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
