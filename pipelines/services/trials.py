"""One tuning trial: sample its values, train it on the train split, score it on the val
split, report to Optuna (pruning) and MLflow (a nested run); and the per-trial progress line."""

from __future__ import annotations

import math
import os
import socket
from collections.abc import Mapping, Sequence
from typing import Any

import mlflow
import numpy as np
import optuna
from optuna.trial import FrozenTrial, TrialState

from mtl_models.inputs import InputSpec
from mtl_models.train.trainer import Callback, EpochLog
from pipelines import tracking
from pipelines.config import Params, SearchEntry, overlay, params_dict
from pipelines.data.splits import ArraysByInput
from pipelines.errors import ConfigError, MtlflowError
from pipelines.services.augmentation import resolve_augmentation
from pipelines.services.fitting import fit
from pipelines.services.study import best_trial, lookup, objective_value

Split = tuple[ArraysByInput, np.ndarray]  # inputs by name, labels


class TrialConfigError(MtlflowError):
    """A sampled combination is not valid params (e.g. shared_depth above a sampled depth)."""


def sample(trial: optuna.Trial, space: Mapping[str, SearchEntry], base: dict[str, Any]) -> dict:
    """Values for the entries whose ``when`` holds, in declaration order."""
    values: dict[str, Any] = {}
    for key, entry in space.items():
        context = {cond: values.get(cond, lookup(base, cond)) for cond in entry.when}
        if not entry.applies(context):
            continue
        if entry.type == "categorical":
            values[key] = trial.suggest_categorical(key, entry.choices or [])
        elif entry.type == "int":
            step = int(entry.step or 1)
            values[key] = trial.suggest_int(
                key, int(entry.low or 0), int(entry.high or 0), step=step, log=entry.log
            )
        else:
            values[key] = trial.suggest_float(
                key, float(entry.low or 0), float(entry.high or 0), step=entry.step, log=entry.log
            )
    return values


class PruneOnScore(Callback):
    """Reports each epoch's mean validation score to Optuna; raises ``TrialPruned`` when the
    pruner says the trial cannot catch up. Not after the last of its ``epochs``: the trial's
    cost is spent by then, so it completes with its score (a rung of successive halving or
    Hyperband can fall on that epoch)."""

    def __init__(self, trial: optuna.Trial, epochs: int | None = None):
        self.trial, self.epochs = trial, epochs

    def on_epoch_end(self, log: EpochLog) -> None:
        self.trial.report(log.val_score, log.epoch)
        if self.epochs is not None and log.epoch >= self.epochs:
            return
        if self.trial.should_prune():
            raise optuna.TrialPruned(f"pruned after epoch {log.epoch}")


class Objective:
    """Trains one trial's params on the train split; scores it on the val split."""

    def __init__(
        self,
        params: Params,
        train_data: Split,
        val_data: Split,
        input_specs: Sequence[InputSpec] = (),
    ):
        self.params = params
        self.input_specs = input_specs
        self.base = params_dict(params)
        self.train_data, self.val_data = train_data, val_data
        self.worker = f"{socket.gethostname()}:{os.getpid()}"
        self.multi = params.tune.objective == "per_task"

    def trial_params(self, values: Mapping[str, Any]) -> Params:
        # the trial budget, and no affinity measurement (it costs time and no trial reads it)
        epochs = {"train.epochs": self.params.tune.epochs, "train.affinity.enabled": False}
        try:
            return overlay(self.params, {**values, **epochs}, source="sampled values")
        except ConfigError as exc:
            raise TrialConfigError(str(exc)) from None

    def __call__(self, trial: optuna.Trial) -> float | list[float]:
        values = sample(trial, self.params.tune.search_space, self.base)
        trial.set_user_attr("worker", self.worker)
        try:
            params = self.trial_params(values)
        except TrialConfigError as exc:
            trial.set_user_attr("fail_reason", str(exc))
            raise
        policy = resolve_augmentation(params)
        callbacks: list[Callback] = [tracking.MlflowEpochLogger()]
        if not self.multi:  # Optuna prunes single-objective studies only
            callbacks.append(PruneOnScore(trial, params.train.epochs))
        parent = mlflow.active_run()
        run = mlflow.start_run(
            run_name=f"trial-{trial.number}",
            nested=True,
            # the parent's experiment, not whatever experiment is active in this process
            experiment_id=parent.info.experiment_id if parent else None,
        )
        trial.set_user_attr("mlflow_run_id", run.info.run_id)
        state, status = "FAIL", "FAILED"
        try:
            mlflow.set_tags(
                {
                    "mtlflow.stage": "tune-trial",
                    "optuna.study": trial.study.study_name,
                    "optuna.trial": trial.number,
                    "optuna.worker": self.worker,
                    **tracking.owner_tags(),
                }
            )
            mlflow.log_params(tracking.flatten(params_dict(params)))
            fitted = fit(
                params, self.train_data, self.val_data, policy, callbacks, self.input_specs
            )
            result = fitted.result
            best = result.history[result.best_epoch - 1]
            scores = {task: float(m["score"]) for task, m in best.val_metrics.items()}
            trial.set_user_attr("val_scores", scores)
            trial.set_user_attr("best_epoch", result.best_epoch)
            mlflow.log_metrics({"best_val_score": result.best_score})
            state, status = "COMPLETE", "FINISHED"
            return list(scores.values()) if self.multi else result.best_score
        except optuna.TrialPruned:
            # not KILLED: that reads as a crash; the search stopped it early, by design
            state, status = "PRUNED", "FINISHED"
            mlflow.set_tag("mlflow.runName", f"trial-{trial.number} (pruned)")
            raise
        except KeyboardInterrupt:
            status = "KILLED"
            raise
        finally:
            mlflow.set_tag("optuna.state", state)
            mlflow.end_run(status=status)


class TrialPrinter:
    """One line per finished trial: state, score, best so far, time and the sampled values."""

    def __init__(self, multi: bool):
        self.multi = multi

    def __call__(self, study: optuna.Study, trial: FrozenTrial) -> None:
        seconds = (
            (trial.datetime_complete - trial.datetime_start).total_seconds()
            if trial.datetime_complete and trial.datetime_start
            else math.nan
        )
        head = f"tune: trial {trial.number:3d} {trial.state.name.lower():8s}"
        if trial.state is TrialState.COMPLETE:
            score = np.mean(trial.values) if self.multi else trial.value
            head += f" score {score:.4f}"
        elif trial.state is TrialState.PRUNED:
            last = trial.last_step
            head += f" at epoch {last}, score {trial.intermediate_values.get(last, math.nan):.4f}"
        elif trial.state is TrialState.FAIL and "fail_reason" in trial.user_attrs:
            head += " " + trial.user_attrs["fail_reason"].replace("\n", " ")
        best = best_trial(study, self.multi)
        if best is not None:
            head += f"  best {objective_value(best, self.multi):.4f} (trial {best.number})"
        shown = " ".join(f"{k}={_fmt(v)}" for k, v in trial.params.items())
        print(f"{head}  {seconds:.1f}s  {shown}", flush=True)


class StopOnFailures:
    """Failed trials do not count towards ``n_trials``; this stops a process whose trials keep
    failing (every sampled combination invalid) instead of looping forever."""

    def __init__(self, limit: int):
        self.limit = limit
        self.failed: list[FrozenTrial] = []

    def __call__(self, study: optuna.Study, trial: FrozenTrial) -> None:
        if trial.state is TrialState.FAIL:
            self.failed.append(trial)
            if len(self.failed) >= self.limit:
                study.stop()

    def check(self) -> None:
        if len(self.failed) >= self.limit:
            reason = self.failed[-1].user_attrs.get("fail_reason", "see the trial runs in MLflow")
            raise MtlflowError(
                f"tune: {len(self.failed)} trials failed in this process; the last: {reason}"
            )


def _fmt(value: Any) -> str:
    return f"{value:.3g}" if isinstance(value, float) else str(value)
