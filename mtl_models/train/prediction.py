"""Predicting over a loader and scoring the predictions, per task."""

from __future__ import annotations

from collections.abc import Iterable, Mapping
from dataclasses import dataclass
from typing import Any

import numpy as np
import torch
from torch import Tensor

from mtl_models.metrics import task_metrics
from mtl_models.nn.model import MultiTaskModel
from mtl_models.train.loaders import Inputs, to_device

Batch = tuple[Inputs, Tensor]


@dataclass
class Predictions:
    """Labels and decoded predictions over a loader, in task order."""

    labels: np.ndarray  # [N, T], NaN = missing
    predictions: np.ndarray  # [N, T]
    probas: dict[str, np.ndarray]  # task -> [N, K] for kinds with class probabilities


@torch.no_grad()
def predict(model: MultiTaskModel, loader: Iterable[Batch], device: torch.device) -> Predictions:
    model.eval()
    labels, preds, probas = [], [], {name: [] for name in model.task_names}
    for inputs, batch_labels in loader:
        decoded = model.decode(model(to_device(inputs, device)))
        labels.append(batch_labels.numpy())
        preds.append(
            np.stack([decoded[n].prediction.float().cpu().numpy() for n in model.task_names], 1)
        )
        for name, d in decoded.items():
            if d.proba is not None:
                probas[name].append(d.proba.cpu().numpy())
    return Predictions(
        labels=np.concatenate(labels),
        predictions=np.concatenate(preds),
        probas={name: np.concatenate(p) for name, p in probas.items() if p},
    )


def score_predictions(
    model: MultiTaskModel, result: Predictions, majority: Mapping[str, float] | None = None
) -> dict[str, dict[str, Any]]:
    return {
        task.name: task_metrics(
            task,
            result.labels[:, t],
            result.predictions[:, t],
            None if majority is None else majority.get(task.name),
        )
        for t, task in enumerate(model.tasks)
    }
