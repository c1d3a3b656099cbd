"""``tune``: an Optuna study over architecture, training and loss weighting.

Every trial is a nested MLflow run under one parent run per ``mtlflow tune`` process. The
study lives in ``tune.storage`` (SQLite by default), so an interrupted tune continues when run
again and several processes (or machines, with a server database) can share it. The best
trial's values go to ``reports/best_params.yaml``, which ``train`` applies.
"""

from __future__ import annotations

import math
import os
import signal
import socket
import time
import warnings
from collections.abc import Iterator, Mapping, Sequence
from contextlib import contextmanager
from typing import Any

import mlflow
import numpy as np
import optuna
import sqlalchemy.exc
from optuna.storages import RDBStorage, RetryHeartbeatStaleTrialCallback
from optuna.trial import FrozenTrial, TrialState

from mtl_models.inputs import InputSpec
from mtl_models.train.trainer import Callback, EpochLog
from pipelines import tracking
from pipelines.config import Params, SearchEntry, get_path, overlay, params_dict
from pipelines.errors import ConfigError, MtlflowError
from pipelines.files import ProjectPaths, atomic_dir, sqlite_lock
from pipelines.services import plots
from pipelines.services.best_params import study_name, write_best_params
from pipelines.stages.augment import resolve_augmentation
from pipelines.stages.split import Inputs, load_input_specs, load_split, split_digest
from pipelines.stages.train import fit

FINISHED = (TrialState.COMPLETE, TrialState.PRUNED)
Split = tuple[Inputs, np.ndarray]  # inputs by name, labels


class TrialConfigError(MtlflowError):
    """A sampled combination is not valid params (e.g. shared_depth above a sampled depth)."""


# ---------------------------------------------------------------------------- study set-up


def open_storage(params: Params) -> RDBStorage:
    """The study storage, with heartbeats so a trial whose process died is marked failed
    (and retried once) by the next process that uses the study."""
    cfg = params.tune
    engine_kwargs: dict[str, Any] = {}
    if cfg.storage.startswith("sqlite"):
        # concurrent local workers wait for the file lock instead of failing
        engine_kwargs["connect_args"] = {"timeout": 60}
    # Two processes creating the schema of a new database at once: one would fail on a
    # duplicate table or version row. A file lock serialises it for SQLite; elsewhere the
    # loser retries once the winner has committed.
    lock = sqlite_lock(cfg.storage)
    last: Exception | None = None
    for attempt in range(5):
        try:
            with lock, warnings.catch_warnings():  # heartbeats are "experimental" (Optuna 2.8+)
                warnings.simplefilter("ignore", optuna.exceptions.ExperimentalWarning)
                return RDBStorage(
                    cfg.storage,
                    engine_kwargs=engine_kwargs,
                    heartbeat_interval=cfg.heartbeat_seconds,
                    grace_period=2 * cfg.heartbeat_seconds,
                    heartbeat_stale_trial_callback=RetryHeartbeatStaleTrialCallback(max_retry=1),
                )
        except sqlalchemy.exc.DBAPIError as exc:
            last = exc
            time.sleep(0.5 * (attempt + 1))
        except (sqlalchemy.exc.ArgumentError, ImportError, ValueError) as exc:
            raise ConfigError(
                f"tune.storage {cfg.storage!r}: not a usable database URL ({exc})"
            ) from None
    raise MtlflowError(f"tune.storage {cfg.storage!r}: cannot open the study database ({last})")


def make_sampler(params: Params, seed: int) -> optuna.samplers.BaseSampler:
    cfg = params.tune.sampler
    if cfg.name == "tpe":
        # constant_liar: concurrent workers see each other's running trials and spread out
        return optuna.samplers.TPESampler(
            n_startup_trials=cfg.n_startup_trials, seed=seed, constant_liar=True
        )
    if cfg.name == "nsga2":
        return optuna.samplers.NSGAIISampler(population_size=cfg.population_size, seed=seed)
    return optuna.samplers.RandomSampler(seed=seed)


def make_pruner(params: Params) -> optuna.pruners.BasePruner:
    cfg = params.tune.pruner
    if cfg.name == "median":
        return optuna.pruners.MedianPruner(
            n_startup_trials=cfg.n_startup_trials, n_warmup_steps=cfg.n_warmup_epochs
        )
    if cfg.name == "successive_halving":
        return optuna.pruners.SuccessiveHalvingPruner(
            min_resource=cfg.min_resource, reduction_factor=cfg.reduction_factor
        )
    return optuna.pruners.NopPruner()


def directions(params: Params) -> list[str]:
    n = len(params.tasks) if params.tune.objective == "per_task" else 1
    return ["maximize"] * n


def load_study(params: Params, storage: RDBStorage, seed: int) -> optuna.Study:
    return optuna.create_study(
        storage=storage,
        study_name=study_name(params),
        directions=directions(params),
        sampler=make_sampler(params, seed),
        pruner=make_pruner(params),
        load_if_exists=True,
    )


# ---------------------------------------------------------------------------- one trial


def sample(trial: optuna.Trial, space: Mapping[str, SearchEntry], base: dict[str, Any]) -> dict:
    """Values for the entries whose ``when`` holds, in declaration order."""
    values: dict[str, Any] = {}
    for key, entry in space.items():
        context = {cond: values.get(cond, _get(base, cond)) for cond in entry.when}
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


def _get(raw: dict[str, Any], key: str) -> Any:
    try:
        return get_path(raw, key)
    except KeyError:
        return None


class PruneOnScore(Callback):
    """Reports each epoch's mean validation score to Optuna; raises ``TrialPruned`` when the
    pruner says the trial cannot catch up."""

    def __init__(self, trial: optuna.Trial):
        self.trial = trial

    def on_epoch_end(self, log: EpochLog) -> None:
        self.trial.report(log.val_score, log.epoch)
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
            callbacks.append(PruneOnScore(trial))
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
            state, status = "PRUNED", "KILLED"
            raise
        except KeyboardInterrupt:
            status = "KILLED"
            raise
        finally:
            mlflow.set_tag("optuna.state", state)
            mlflow.end_run(status=status)


# ---------------------------------------------------------------------------- progress


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


def objective_value(trial: FrozenTrial, multi: bool) -> float:
    return float(np.mean(trial.values)) if multi else float(trial.value)  # type: ignore[arg-type]


def best_trial(study: optuna.Study, multi: bool) -> FrozenTrial | None:
    """Single objective: Optuna's best. Per task: of the Pareto front, the best mean score."""
    if not any(t.state is TrialState.COMPLETE for t in study.get_trials(deepcopy=False)):
        return None
    if not multi:
        return study.best_trial
    return max(study.best_trials, key=lambda t: objective_value(t, True))


# ---------------------------------------------------------------------------- the stage


@contextmanager
def _sigterm_as_interrupt() -> Iterator[None]:
    """A terminated process (a scheduler's cancel) marks its trial failed, as Ctrl-C does."""

    def handler(signum: int, frame: Any) -> None:
        raise KeyboardInterrupt(f"signal {signum}")

    try:
        previous = signal.signal(signal.SIGTERM, handler)
    except ValueError:  # not the main thread: leave signals alone
        yield
        return
    try:
        yield
    finally:
        signal.signal(signal.SIGTERM, previous)


def _defaults(params: Params) -> dict[str, Any]:
    base = params_dict(params)
    values = {}
    for key, entry in params.tune.search_space.items():
        value = _get(base, key)
        if entry.applies({c: _get(base, c) for c in entry.when}) and entry.contains(value):
            values[key] = value
    return values


def tune(params: Params, paths: ProjectPaths) -> dict[str, Any]:
    """Run the study until it holds ``tune.n_trials`` finished trials; write the best params."""
    cfg = params.tune
    if not cfg.enabled or not cfg.search_space:
        reason = "tune.enabled is false" if not cfg.enabled else "tune.search_space is empty"
        print(f"tune: skipped ({reason}); train uses params.yaml as it is")
        content: dict[str, Any] = {"study": None, "skipped": reason, "params": {}}
        write_best_params(paths, content)
        return content
    multi = cfg.objective == "per_task"
    optuna.logging.set_verbosity(optuna.logging.ERROR)  # TrialPrinter says it once, shorter
    tasks = params.task_specs()
    data = load_split(paths, "train", tasks), load_split(paths, "val", tasks)
    input_specs = load_input_specs(paths)
    resolve_augmentation(params)  # fails before any trial
    storage = open_storage(params)
    # Serialises creating the study and queueing trial 0 among local workers of a SQLite study
    # (a server database's workers may race there: at worst trial 0 is queued twice).
    with sqlite_lock(cfg.storage):
        study = load_study(params, storage, seed=cfg.seed)
        trials = study.get_trials(deepcopy=False)
        done = sum(t.state in FINISHED for t in trials)
        # A resumed study draws new random values rather than replaying the first run's.
        study.sampler = make_sampler(params, cfg.seed + len(trials))
        if cfg.enqueue_defaults:
            # params.yaml's own values are trial 0, so the search never returns worse than
            # them (values outside their entry's range are left to the sampler)
            study.enqueue_trial(_defaults(params), skip_if_exists=True)
    remaining = cfg.n_trials - done
    print(
        f"tune: study {study.study_name} in {cfg.storage}: {done} finished trials, "
        f"{max(remaining, 0)} to run ({cfg.epochs} epochs each, pruner {cfg.pruner.name}"
        f"{', off for per-task objectives' if multi and cfg.pruner.name != 'none' else ''})"
    )
    with tracking.training_run(params, paths.root, run_name="tune", join=False):
        mlflow.set_tags(
            {
                "mtlflow.stage": "tune",
                "optuna.study": study.study_name,
                "data.split_sha256": split_digest(paths),
            }
        )
        if remaining > 0:
            objective = Objective(params, *data, input_specs=input_specs)
            try:
                with _sigterm_as_interrupt():
                    failures = StopOnFailures(limit=max(5, cfg.n_trials))
                    study.optimize(
                        objective,
                        catch=(TrialConfigError,),
                        callbacks=[
                            optuna.study.MaxTrialsCallback(cfg.n_trials, states=FINISHED),
                            TrialPrinter(multi),
                            failures,
                        ],
                    )
                    failures.check()
            except KeyboardInterrupt:
                print("tune: interrupted; run `mtlflow tune` again to continue the study")
                raise
        return _report(params, paths, study, multi)


def _report(params: Params, paths: ProjectPaths, study: optuna.Study, multi: bool) -> dict:
    trials = study.get_trials(deepcopy=False)
    counts = {s.name.lower(): sum(t.state is s for t in trials) for s in TrialState}
    best = best_trial(study, multi)
    if best is None:
        raise MtlflowError(
            f"tune: no trial of study {study.study_name} completed "
            f"({counts['pruned']} pruned, {counts['fail']} failed); see the trial runs in MLflow"
        )
    content: dict[str, Any] = {
        "study": study.study_name,
        "storage": params.tune.storage,
        "objective": params.tune.objective,
        "trial": best.number,
        "value": objective_value(best, multi),
        "val_scores": best.user_attrs.get("val_scores", {}),
        "params": dict(best.params),
    }
    if multi:
        content["pareto_front"] = [
            {"trial": t.number, "values": dict(zip(params.tasks, t.values, strict=True))}
            for t in study.best_trials
        ]
    shown = ("complete", "pruned", "fail")
    mlflow.log_metrics(
        {f"trials/{state}": n for state, n in counts.items() if state in shown}
        | {"best_value": content["value"], "best_trial": best.number}
    )
    mlflow.log_params({f"best.{k}": v for k, v in best.params.items()})
    with atomic_dir(paths.tune_dir) as scratch:
        study.trials_dataframe().to_csv(scratch / "trials.csv", index=False)
        for name, figure in plots.study_plots(study, multi, list(params.tasks)).items():
            plots.save(figure, scratch / f"{name}.png")
    mlflow.log_artifacts(str(paths.tune_dir), artifact_path="tune")
    write_best_params(paths, content)
    mlflow.log_artifact(str(paths.best_params))
    print(
        f"tune: best trial {best.number}, mean val score {content['value']:.4f}; "
        f"{counts['complete']} complete, {counts['pruned']} pruned, {counts['fail']} failed; "
        f"wrote {paths.best_params}"
    )
    return content
