"""Gradient-boosted baselines for tables: one scikit-learn ``HistGradientBoosting*`` model per
task, on the split the network learns from, scored by the network's own metric functions, so
``evaluate`` can say whether the network beats the usual tool for tables (Δm against them).

The trees read the same encoded arrays as the network (numeric columns standardised with a
missing value at the training mean, categorical ones one-hot): the comparison is between the
learners, not between two encodings of the data.
"""

from __future__ import annotations

import time
from collections.abc import Mapping, Sequence
from typing import Any

import mlflow
import numpy as np
from sklearn.ensemble import HistGradientBoostingClassifier, HistGradientBoostingRegressor

from mtl_models.inputs import InputSpec
from mtl_models.losses import ClassWeighting
from mtl_models.metrics import majority_labels, task_metrics
from mtl_models.tasks import TaskSpec, fit_task
from pipelines import tracking
from pipelines.config import Params
from pipelines.data.splits import ArraysByInput

# An upper bound only: early stopping on the validation split sets the number of rounds
# (sklearn's default of 100 at learning rate 0.1 can stop a larger table short).
MAX_ITER = 1000
# Without a usable validation row nothing can stop it: sklearn's default number of rounds.
ROUNDS_WITHOUT_VAL = 100
BASELINE_TAG = "gradient_boosting"  # mtlflow.baseline of the nested runs

Split = tuple[ArraysByInput, np.ndarray]
Booster = HistGradientBoostingClassifier | HistGradientBoostingRegressor


def unsupported_inputs(input_specs: Sequence[InputSpec]) -> str | None:
    """Why trees cannot read these inputs (an image or a signal is not a row of columns), or
    None when every input is a table."""
    others = [f"'{s.name}' ({s.kind})" for s in input_specs if not s.tabular]
    if not others:
        return None
    return f"it reads table (features) inputs only, not {', '.join(others)}"


def table(inputs: ArraysByInput) -> np.ndarray:
    """One split's table inputs side by side, float ``[N, columns]``, in input-name order."""
    return np.concatenate([np.asarray(inputs[name], float) for name in sorted(inputs)], axis=1)


def make_booster(task: TaskSpec, seed: int, early_stopping: bool) -> Booster:
    """A classifier for every discrete kind, a regressor otherwise, seeded from ``train.seed``.

    An ordinal task is fitted as a plain classifier: scikit-learn has no cumulative-link
    booster, so its levels' order reaches the trees only through the score (QWK)."""
    cls = (
        HistGradientBoostingClassifier
        if task.kind_plugin.discrete
        else HistGradientBoostingRegressor
    )
    rounds = MAX_ITER if early_stopping else ROUNDS_WITHOUT_VAL
    return cls(max_iter=rounds, early_stopping=early_stopping, random_state=seed)


def _row_weights(task: TaskSpec, y: np.ndarray) -> np.ndarray | None:
    """The task's class weights per row: the network's loss weighs its classes the same way."""
    return None if task.class_weights is None else np.asarray(task.class_weights)[y.astype(int)]


def fit_booster(
    task: TaskSpec, t: int, splits: Mapping[str, Split], seed: int, weighting: ClassWeighting
) -> Booster:
    """Task column ``t`` fitted on the training rows that label it, stopped early on the
    labelled validation rows (no early stopping when none is usable)."""
    (x_train, y_train), (x_val, y_val) = (
        (table(x), y[:, t]) for x, y in (splits["train"], splits["val"])
    )
    keep, use_val = ~np.isnan(y_train), ~np.isnan(y_val)
    task = fit_task(task, y_train, weighting)  # its class weights, as the network's loss has
    if task.kind_plugin.discrete:  # sklearn refuses a validation class it never trained on
        use_val &= np.isin(y_val, np.unique(y_train[keep]))
    booster = make_booster(task, seed, early_stopping=bool(use_val.any()))
    validation: dict[str, Any] = {}
    if use_val.any():
        x, y = x_val[use_val], y_val[use_val]
        validation = dict(X_val=x, y_val=y, sample_weight_val=_row_weights(task, y))
    weights = _row_weights(task, y_train[keep])
    return booster.fit(x_train[keep], y_train[keep], sample_weight=weights, **validation)


def fit_gradient_boosting(
    task: TaskSpec,
    t: int,
    splits: Mapping[str, Split],
    seed: int,
    weighting: ClassWeighting,
    majority: float | None,
    experiment_id: str,
) -> dict[str, Any]:
    """:func:`fit_booster` scored on the test split by the network's metric functions, in a
    nested MLflow run of the active one; returns its entry of ``baselines.json``."""
    start = time.perf_counter()
    with mlflow.start_run(
        run_name=f"baseline-{BASELINE_TAG}-{task.name}",
        nested=True,
        experiment_id=experiment_id,  # the parent's, not whatever experiment is active
    ) as run:
        tags = {"mtlflow.stage": "baseline", "mtlflow.task": task.name}
        mlflow.set_tags(tags | {"mtlflow.baseline": BASELINE_TAG})
        booster = fit_booster(task, t, splits, seed, weighting)
        test_inputs, test_labels = splits["test"]
        scored = task_metrics(
            task, test_labels[:, t], booster.predict(table(test_inputs)), majority
        )
        params = {f"model.{k}": v for k, v in booster.get_params().items()}
        mlflow.log_params(params | {"model": type(booster).__name__, "task.kind": task.kind})
        mlflow.log_metrics(
            tracking.task_metric_values("test", {task.name: scored}) | {"n_iter": booster.n_iter_}
        )
    return {
        "model": type(booster).__name__,
        "metric": task.primary_metric,
        "score": scored["score"],
        "n_iter": int(booster.n_iter_),
        "early_stopping": bool(booster.early_stopping),  # on the val split when true
        "seconds": round(time.perf_counter() - start, 1),
        "run_id": run.info.run_id,
        "test": scored,
    }


def gradient_boosting_baselines(
    params: Params,
    splits: Mapping[str, Split],
    input_specs: Sequence[InputSpec],
    experiment_id: str,
) -> dict[str, Any]:
    """The ``gradient_boosting`` block of ``baselines.json``: a fitted model per task, or a
    note saying why there is none (the key is off, or an input is not a table)."""
    if not params.baselines.gradient_boosting:
        return {"enabled": False, "note": "baselines.gradient_boosting is false"}
    reason = unsupported_inputs(input_specs)
    if reason is not None:
        print(f"baselines: gradient boosting skipped: {reason}")
        return {"enabled": False, "note": f"gradient boosting skipped: {reason}"}
    tasks = params.task_specs()
    majority = majority_labels(np.asarray(splits["train"][1]), tasks)
    results: dict[str, dict[str, Any]] = {}
    for t, task in enumerate(tasks):
        done = results[task.name] = fit_gradient_boosting(
            task,
            t,
            splits,
            params.train.seed,
            params.class_weighting(task.name),
            majority.get(task.name),
            experiment_id,
        )
        print(
            f"baselines: {task.name} gradient boosting test {task.primary_metric} "
            f"{done['score']:.4f} ({done['n_iter']} rounds, {done['seconds']}s)"
        )
    return {"enabled": True, "tasks": results}
