"""Scoring a trained model on a split: per-task metrics against the majority baseline, and
the text table the CLI prints."""

from __future__ import annotations

from typing import Any

import numpy as np

from mtl_models.metrics import majority_labels
from mtl_models.nn.model import MultiTaskModel
from mtl_models.tasks import TaskSpec
from mtl_models.train.loaders import MultiTaskDataset, make_loader
from mtl_models.train.prediction import Predictions, predict, score_predictions
from pipelines.data.splits import ArraysByInput

# majority_accuracy sits beside the score because a constant predictor's QWK is 0 by
# definition: accuracy shows whether a skewed ordinal task really beats "always the mode".
TABLE_COLUMNS = ("kind", "score", "majority_baseline", "accuracy", "majority_accuracy", "collapsed")


def format_table(metrics: dict[str, Any]) -> str:
    """Per-task test metrics as a fixed-width text table."""
    per_task = metrics["tasks"]
    extra = sorted({k for m in per_task.values() for k in m} - set(TABLE_COLUMNS) - {"n"})
    header = ["task", *TABLE_COLUMNS, *extra]
    rows = []
    for name, m in per_task.items():
        cells = [name]
        for key in header[1:]:
            value = m.get(key, "")
            cells.append(f"{value:.3f}" if isinstance(value, float) else str(value).lower())
        rows.append(cells)
    widths = [max(len(r[i]) for r in [header, *rows]) for i in range(len(header))]
    lines = ["  ".join(c.ljust(w) for c, w in zip(r, widths, strict=True)) for r in [header, *rows]]
    lines.insert(1, "  ".join("-" * w for w in widths))
    summary = metrics["summary"]
    lines.append(
        f"mean score {summary['mean_score']:.3f}; "
        f"{len(summary['tasks_beating_majority'])}/{len(per_task)} tasks beat their majority "
        "baseline; "
        f"collapsed: {', '.join(summary['collapsed_tasks']) or 'none'}"
    )
    return "\n".join(lines)


def score_split(
    model: MultiTaskModel,
    inputs: ArraysByInput,
    labels: np.ndarray,
    train_labels: np.ndarray,
    tasks: list[TaskSpec],
) -> tuple[Predictions, dict[str, dict[str, Any]]]:
    """Predict a split and score each task against its majority baseline (the training
    split's mode or mean)."""
    loader = make_loader(MultiTaskDataset(inputs, labels), 256, shuffle=False)
    result = predict(model, loader, next(model.parameters()).device)
    return result, score_predictions(model, result, majority_labels(train_labels, tasks))
