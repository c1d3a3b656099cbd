"""Single-task baselines: params for a model that learns one task alone, on the same
backbone, budget and split, so ``evaluate`` can report Δm (does sharing help each task?)."""

from __future__ import annotations

import time
from collections.abc import Mapping, Sequence
from typing import Any

import mlflow
import numpy as np

from mtl_models.augment.policy import ResolvedPolicy
from mtl_models.inputs import InputSpec
from pipelines import tracking
from pipelines.config import Params, params_dict, parse_params
from pipelines.data.splits import ArraysByInput
from pipelines.services.fitting import fit
from pipelines.services.scoring import score_split


def single_task_params(params: Params, task: str) -> Params:
    """``params`` for a model that learns ``task`` alone.

    The backbone, heads, optimiser, epochs, early stopping and augmentation requests stay; what
    only means something with several tasks goes: the weighting (one loss needs none), task
    affinity, and augmentation remaps. With one task a remap could only move its label to a task
    that is not there, so a transform that needs one (a horizontal flip for a ``_left`` task) is
    excluded by the task's own ``sensitive_to``, as for any transform that would change it.
    """
    raw = params_dict(params)
    raw["tasks"] = {task: raw["tasks"][task]}
    raw["train"]["weighting"] = {"method": "equal"}
    raw["train"]["affinity"]["enabled"] = False
    raw["augment"]["remaps"] = {}
    raw["tune"] |= {"enabled": False, "search_space": {}}
    return parse_params(raw, source=f"single-task params for {task}", check_space=False)


def fit_single_task(
    single: Params,
    t: int,
    splits: Mapping[str, tuple[ArraysByInput, np.ndarray]],
    policy: ResolvedPolicy,
    input_specs: Sequence[InputSpec],
    experiment_id: str,
) -> dict[str, Any]:
    """Train ``single`` (the params of task column ``t`` alone) in a nested MLflow run of the
    active one and score it on the test split; returns its entry of ``baselines.json``."""
    column = [t]
    (train_inputs, train_labels), (val_inputs, val_labels), (test_inputs, test_labels) = (
        splits["train"],
        splits["val"],
        splits["test"],
    )
    (task,) = single.task_specs()
    start = time.perf_counter()
    with mlflow.start_run(
        run_name=f"baseline-{task.name}",
        nested=True,
        experiment_id=experiment_id,  # the parent's, not whatever experiment is active
    ) as run:
        mlflow.set_tags(
            {"mtlflow.stage": "baseline", "mtlflow.task": task.name, "mtlflow.baseline": "network"}
        )
        mlflow.log_params(tracking.flatten(params_dict(single)))
        fitted = fit(
            single,
            (train_inputs, train_labels[:, column]),
            (val_inputs, val_labels[:, column]),
            policy,
            callbacks=[tracking.EpochPrinter(), tracking.MlflowEpochLogger()],
            input_specs=input_specs,
        )
        _, per_task = score_split(
            fitted.model, test_inputs, test_labels[:, column], train_labels[:, column], fitted.tasks
        )
        scored = per_task[task.name]
        mlflow.log_metrics(
            tracking.task_metric_values("test", per_task)
            | {"best_epoch": fitted.result.best_epoch, "best_val_score": fitted.result.best_score}
        )
    return {
        "metric": task.primary_metric,
        "score": scored["score"],
        "best_epoch": fitted.result.best_epoch,
        "best_val_score": fitted.result.best_score,
        "seconds": round(time.perf_counter() - start, 1),
        "excluded_transforms": [d.name for d in policy.excluded],
        "run_id": run.info.run_id,
        "test": scored,
    }
