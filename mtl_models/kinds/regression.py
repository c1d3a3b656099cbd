"""``regression``: a standardised continuous target, MSE, predicted in original units."""

from __future__ import annotations

from collections.abc import Mapping
from dataclasses import replace
from typing import TYPE_CHECKING, ClassVar

import numpy as np
from sklearn import metrics as skm
from torch import Tensor

from mtl_models.kinds._base import COLLAPSE_STD_RATIO, KINDS, Decoded, Kind
from mtl_models.losses import ClassWeighting, mse_loss

if TYPE_CHECKING:
    from mtl_models.tasks import TaskSpec

# A stratified split balances the targets' quantile bins.
STRATA_BINS = 5


@KINDS.register("regression")
class Regression(Kind):
    """Learns ``(target - target_mean) / target_std``; decodes back to original units."""

    discrete: ClassVar[bool] = False
    primary_metric: ClassVar[str] = "r2"
    # A measured quantity also depends on size and intensity.
    sensitivity: ClassVar[Mapping[str, float]] = {
        "blur": 5,
        "noise": 0.1,
        "crop": 0,
        "erase": 0,
        "scale": 0,
        "brightness": 0.2,
        "contrast": 0.2,
        "gamma": 0.2,
    }

    def n_outputs(self, task: TaskSpec) -> int:
        return 1

    def loss(
        self,
        task: TaskSpec,
        outputs: Tensor,
        target: Tensor,
        class_weights: Tensor | None = None,
        mask: Tensor | None = None,
    ) -> Tensor:
        standardised = (target - task.target_mean) / task.target_std
        return mse_loss(outputs.squeeze(1), standardised, mask)

    def decode(self, task: TaskSpec, outputs: Tensor) -> Decoded:
        return Decoded(outputs.squeeze(1) * task.target_std + task.target_mean, None)

    def fit(self, task: TaskSpec, values: np.ndarray, class_weighting: ClassWeighting) -> TaskSpec:
        std = float(values.std()) if len(values) > 1 else 1.0
        return replace(task, target_mean=float(values.mean()), target_std=std or 1.0)

    def scores(self, task: TaskSpec, y: np.ndarray, p: np.ndarray) -> dict[str, float]:
        return {
            "mae": float(skm.mean_absolute_error(y, p)),
            "rmse": float(np.sqrt(skm.mean_squared_error(y, p))),
            "r2": float(skm.r2_score(y, p)) if len(y) > 1 else 0.0,
        }

    def majority(self, values: np.ndarray) -> float:
        return float(np.mean(values))

    def collapsed(self, y: np.ndarray, p: np.ndarray) -> bool:
        return bool(np.std(y) > 0 and np.std(p) < COLLAPSE_STD_RATIO * np.std(y))

    def strata(self, task: TaskSpec, values: np.ndarray) -> np.ndarray:
        values = np.asarray(values, dtype=float)
        present = ~np.isnan(values)
        edges = np.nanquantile(values, np.linspace(0, 1, STRATA_BINS + 1)[1:-1])
        bins = np.where(present, np.digitize(np.nan_to_num(values), edges), np.nan)
        columns = [present & (bins == c) for c in range(STRATA_BINS)]
        return np.stack(columns, axis=1).astype(np.int8)

    def invalid_label_rows(self, task: TaskSpec, labels: np.ndarray) -> np.ndarray:
        labels = np.asarray(labels, dtype=float)
        return np.flatnonzero(~np.isnan(labels) & ~np.isfinite(labels))

    def expected_labels(self, task: TaskSpec) -> str:
        return "a finite number or empty"
