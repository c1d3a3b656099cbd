"""The plots as data (CSV) under ``reports/plots/data/``, for ``dvc plots show`` and
``dvc plots diff``: learning curves, confusion pairs and affinity rows per task.

The PNGs beside them are for MLflow; DVC draws these files with the templates that
``dvc.yaml``'s top-level ``plots:`` names. One file per task (in a directory) because DVC
draws a directory as one chart per file, each with a line per compared revision, while a
single file would need its task names listed in ``dvc.yaml``.
"""

from __future__ import annotations

import csv
import io
from collections.abc import Iterable, Mapping, Sequence
from pathlib import Path
from typing import Any

import numpy as np

from mtl_models.tasks import TaskSpec
from mtl_models.train.trainer import EpochLog
from pipelines.files import ProjectPaths, atomic_dir, atomic_write_bytes

CURVE_COLUMNS = ("epoch", "val_score", "train_loss")
CONFUSION_COLUMNS = ("actual", "predicted")
AFFINITY_COLUMNS = ("target", "affinity")


def data_dir(paths: ProjectPaths) -> Path:
    return paths.plots_dir / "data"


def curves_dir(paths: ProjectPaths) -> Path:
    """``<task>.csv`` per task: epoch, validation score, unweighted training loss."""
    return data_dir(paths) / "learning_curves"


def mean_curve_file(paths: ProjectPaths) -> Path:
    """All tasks together: epoch, mean validation score, mean unweighted task loss."""
    return data_dir(paths) / "learning_curve_mean.csv"


def confusion_dir(paths: ProjectPaths) -> Path:
    """``<task>.csv`` per discrete task: one (actual, predicted) row per labelled test row."""
    return data_dir(paths) / "confusion"


def affinity_dir(paths: ProjectPaths) -> Path:
    """``<task>.csv`` per task (a row of the affinity matrix): the effect of a step on that
    task on each other task's loss; empty when affinity was not measured."""
    return data_dir(paths) / "affinity"


def _csv(columns: Sequence[str], rows: Iterable[Sequence[Any]]) -> bytes:
    buffer = io.StringIO()
    writer = csv.writer(buffer, lineterminator="\n")
    writer.writerow(columns)
    writer.writerows(rows)
    return buffer.getvalue().encode()


def _number(value: float | None) -> str:
    """A value as CSV text: 6 significant digits, empty for NaN (the metric was undefined)."""
    if value is None or np.isnan(value):
        return ""
    return f"{float(value) + 0.0:.6g}"  # + 0.0: a rounded -0.0 reads 0


def _file_name(task: str) -> str:
    if not task or task.startswith(".") or any(c in task for c in "/\\"):
        raise ValueError(f"task name {task!r} cannot name a plot data file")
    return f"{task}.csv"


def write_learning_curves(history: Sequence[EpochLog], paths: ProjectPaths) -> None:
    """Per task, the curves ``plots.learning_curves`` draws: one row per epoch; and the
    means over tasks in ``learning_curve_mean.csv``.

    The loss is the task's unweighted one, as in the PNG: comparable across weighting methods,
    unlike each method's own objective. The PNG sums it over tasks; the mean here keeps the
    loss on the scale of the score in the same chart."""
    tasks = list(history[0].task_losses)
    with atomic_dir(curves_dir(paths)) as scratch:
        for task in tasks:
            rows = [
                (
                    log.epoch,
                    _number(log.val_metrics[task]["score"]),
                    _number(log.task_losses[task]),
                )
                for log in history
            ]
            (scratch / _file_name(task)).write_bytes(_csv(CURVE_COLUMNS, rows))
    mean_rows = [
        (log.epoch, _number(log.val_score), _number(np.mean(list(log.task_losses.values()))))
        for log in history
    ]
    atomic_write_bytes(mean_curve_file(paths), _csv(CURVE_COLUMNS, mean_rows))


def confusion_rows(task: TaskSpec, labels: np.ndarray, predictions: np.ndarray) -> list[tuple]:
    """(actual, predicted) by class name for each labelled sample of a discrete task."""
    names = task.class_names
    present = ~np.isnan(np.asarray(labels, dtype=float))

    def name(value: float) -> str:
        index = int(value)
        return names[index] if 0 <= index < len(names) else str(index)

    return [
        (name(actual), name(predicted))
        for actual, predicted in zip(labels[present], predictions[present], strict=True)
    ]


def write_confusion(
    tasks: Sequence[TaskSpec], labels: np.ndarray, predictions: np.ndarray, paths: ProjectPaths
) -> None:
    """``confusion/<task>.csv`` for every discrete task (the directory always exists, so DVC
    finds the output even when every task is a regression)."""
    with atomic_dir(confusion_dir(paths)) as scratch:
        for t, task in enumerate(tasks):
            if task.is_discrete:
                rows = confusion_rows(task, labels[:, t], predictions[:, t])
                (scratch / _file_name(task.name)).write_bytes(_csv(CONFUSION_COLUMNS, rows))


def affinity_rows(report: Mapping[str, Any]) -> dict[str, list[tuple[str, str]]]:
    """Per stepped task, the mean lookahead affinity Z(task → target) of
    ``reports/affinity.json`` on every other task it was measured on (a task's effect on
    itself would dwarf the rest); nothing when affinity was not measured."""
    if not report.get("enabled"):
        return {}
    return {
        source: [
            (target, _number(value))
            for target, value in row.items()
            if target != source and value is not None
        ]
        for source, row in report["matrix"].items()
    }


def write_affinity(report: Mapping[str, Any], paths: ProjectPaths) -> None:
    """``affinity/<task>.csv`` from the affinity report: a row of the matrix per file, since
    DVC draws a directory as a chart per file (72 bars in one chart, for 9 tasks, are
    unreadable). The directory always exists, so DVC finds the output."""
    with atomic_dir(affinity_dir(paths)) as scratch:
        for source, rows in affinity_rows(report).items():
            (scratch / _file_name(source)).write_bytes(_csv(AFFINITY_COLUMNS, rows))
