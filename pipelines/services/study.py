"""The Optuna study behind ``tune``: its storage (with heartbeats), sampler, pruner and
directions, and which trial is best. Several processes or machines may share one study."""

from __future__ import annotations

import signal
import time
import warnings
from collections.abc import Iterator
from contextlib import contextmanager
from typing import Any

import mlflow
import numpy as np
import optuna
import sqlalchemy.exc
from optuna.storages import RDBStorage, RetryHeartbeatStaleTrialCallback
from optuna.trial import FrozenTrial, TrialState

from pipelines.config import Params, get_path, params_dict
from pipelines.errors import ConfigError, MtlflowError
from pipelines.files import ProjectPaths, atomic_dir, sqlite_lock
from pipelines.redaction import redact
from pipelines.services import plots
from pipelines.services.best_params import study_name, write_best_params
from pipelines.services.trial_cap import CappedStorage

FINISHED = (TrialState.COMPLETE, TrialState.PRUNED)


def lookup(raw: dict[str, Any], key: str) -> Any:
    """The value at dotted ``key`` of raw params, None where there is none."""
    try:
        return get_path(raw, key)
    except KeyError:
        return None


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
                return CappedStorage(
                    cfg.storage,
                    cap=cfg.n_trials,
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
                f"tune.storage {redact(cfg.storage)!r}: not a usable database URL "
                f"({redact(str(exc))})"
            ) from None
    raise MtlflowError(
        f"tune.storage {redact(cfg.storage)!r}: cannot open the study database "
        f"({redact(str(last))})"
    )


def make_sampler(params: Params, seed: int) -> optuna.samplers.BaseSampler:
    cfg = params.tune.sampler
    if cfg.name == "tpe":
        # constant_liar: concurrent workers see each other's running trials and spread out
        return optuna.samplers.TPESampler(
            n_startup_trials=cfg.n_startup_trials, seed=seed, constant_liar=True
        )
    if cfg.name == "qmc":
        with warnings.catch_warnings():  # experimental in Optuna since 3.0, stable interface
            warnings.simplefilter("ignore", optuna.exceptions.ExperimentalWarning)
            # parameters outside the first trial's space (a `when` entry) are drawn at random
            return optuna.samplers.QMCSampler(
                seed=seed, scramble=True, warn_independent_sampling=False
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
    if cfg.name == "hyperband":
        # brackets of successive halving from min_resource up to the trial's full budget
        return optuna.pruners.HyperbandPruner(
            min_resource=cfg.min_resource,
            max_resource=params.tune.epochs,
            reduction_factor=cfg.reduction_factor,
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


def objective_value(trial: FrozenTrial, multi: bool) -> float:
    return float(np.mean(trial.values)) if multi else float(trial.value)  # type: ignore[arg-type]


def best_trial(study: optuna.Study, multi: bool) -> FrozenTrial | None:
    """Single objective: Optuna's best. Per task: of the Pareto front, the best mean score."""
    if not any(t.state is TrialState.COMPLETE for t in study.get_trials(deepcopy=False)):
        return None
    if not multi:
        return study.best_trial
    return max(study.best_trials, key=lambda t: objective_value(t, True))


@contextmanager
def sigterm_as_interrupt() -> Iterator[None]:
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


def default_values(params: Params) -> dict[str, Any]:
    base = params_dict(params)
    values = {}
    for key, entry in params.tune.search_space.items():
        value = lookup(base, key)
        if entry.applies({c: lookup(base, c) for c in entry.when}) and entry.contains(value):
            values[key] = value
    return values


def report_study(params: Params, paths: ProjectPaths, study: optuna.Study, multi: bool) -> dict:
    """Write ``reports/best_params.yaml``, the trials table and study plots; log them to the
    active MLflow run."""
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
