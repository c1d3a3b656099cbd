"""MLflow glue: where runs go, what they record, and the trainer callback that logs epochs."""

from __future__ import annotations

import json
import math
import os
import re
import subprocess
import warnings
from collections.abc import Iterator
from contextlib import ExitStack, contextmanager, suppress
from pathlib import Path
from typing import Any

import mlflow
import pandas as pd
from mlflow.entities import Run
from mlflow.exceptions import MlflowException

from mtl_models.train.trainer import Callback, EpochLog, FitResult, Trainer
from pipelines.config import Params
from pipelines.errors import ConfigError
from pipelines.files import sqlite_lock
from pipelines.redaction import redact, redact_values
from pipelines.tracking.locks import retry_locked
from pipelines.tracking.orphans import REASON_TAG, close_orphaned_runs, owner_tags
from pipelines.tracking.relocation import check_not_relocated
from pipelines.tracking.store import (
    STORE_ERRORS,
    check_store_reachable,
    set_tracking_uri,
    unusable_store,
    uri_source,
)


def tracking_uri(params: Params) -> str:
    """``MLFLOW_TRACKING_URI`` wins over ``tracking.uri`` in params."""
    return os.environ.get("MLFLOW_TRACKING_URI") or params.tracking.uri


def configure(params: Params) -> str:
    """Point MLflow at the store and check it answers: a clear error before any work."""
    uri, key = tracking_uri(params), uri_source()
    check_store_reachable(uri, key)
    set_tracking_uri(uri)
    _create_sqlite_store(uri, key)
    check_not_relocated(uri, params.tracking.experiment)
    return uri


_READY: set[str] = set()


def _create_sqlite_store(uri: str, key: str) -> None:
    """Create (migrate) a SQLite tracking database under a file lock, once per process.

    Two processes opening a new database at once (parallel ``mtlflow tune`` workers) would both
    run MLflow's schema migrations and one fails with "duplicate column name".
    """
    if uri in _READY or not uri.startswith("sqlite:///"):
        return
    folder = Path(uri.removeprefix("sqlite:///")).parent
    try:
        folder.mkdir(parents=True, exist_ok=True)
    except OSError as exc:
        raise ConfigError(
            f"{key} {redact(uri)!r}: cannot create its folder {folder} "
            f"({exc.strerror or exc}); choose a writable path or set MLFLOW_TRACKING_URI"
        ) from None
    with sqlite_lock(uri):
        try:
            retry_locked(
                lambda: mlflow.MlflowClient(uri).search_experiments(max_results=1),
                f"open the tracking store {redact(uri)}",
            )
        except STORE_ERRORS as exc:  # not a database, unreadable: what is wrong, in a line
            raise unusable_store(uri, key, exc) from None
    _READY.add(uri)


_PARAM_KEY = re.compile(r"^[\w\-. :/]+$")  # what MLflow accepts in a param name


def flatten(data: Any, prefix: str = "") -> dict[str, Any]:
    """Nested mapping -> ``{"train.lr": 0.002, ...}`` for ``mlflow.log_params``.

    A mapping whose keys MLflow would refuse as names (``"*_left"`` in a remap) stays one
    parameter holding its JSON.
    """
    if not isinstance(data, dict):
        return {prefix: redact_values(data)}  # a storage URL's password is no param
    if prefix and not all(_PARAM_KEY.match(str(key)) for key in data):
        return {prefix: json.dumps(redact_values(data))}
    flat: dict[str, Any] = {}
    for key, value in data.items():
        flat |= flatten(value, f"{prefix}.{key}" if prefix else str(key))
    return flat


def git_commit(root: Path) -> str | None:
    try:
        out = subprocess.run(
            ["git", "rev-parse", "HEAD"], cwd=root, capture_output=True, text=True, check=True
        )
    except (OSError, subprocess.CalledProcessError):
        return None
    return out.stdout.strip() or None


@contextmanager
def training_run(
    params: Params,
    root: Path,
    run_name: str,
    join: bool = True,
    project_run: str | None = None,
    resume_run: str | None = None,
) -> Iterator[Run]:
    """Start the run a stage logs to. A project run may already exist: the one a Prefect
    flow run opened (``project_run``), or under ``mlflow run`` the one MLflow made
    (``MLFLOW_RUN_ID``). ``join`` logs into it; otherwise the stage's run is nested under it
    (``tune``, whose trials' params differ from the final ones). Without a project run,
    ``resume_run`` (an interrupted training's) is reopened when the store still has it."""
    configure(params)
    with ExitStack() as stack:
        from_env = os.environ.get("MLFLOW_RUN_ID")
        project_run = project_run or from_env
        if from_env:
            # mlflow.start_run() takes (and unsets) MLFLOW_RUN_ID whatever it is asked:
            # keep it for the next stage of `mlflow run`, and say which run to use here
            del os.environ["MLFLOW_RUN_ID"]
            stack.callback(os.environ.__setitem__, "MLFLOW_RUN_ID", from_env)
        if project_run and join:
            run = stack.enter_context(mlflow.start_run(run_id=project_run))
        elif project_run:
            parent = mlflow.MlflowClient().get_run(project_run)
            run = stack.enter_context(
                mlflow.start_run(
                    experiment_id=parent.info.experiment_id,
                    run_name=run_name,
                    parent_run_id=project_run,
                )
            )
        elif resume_run and _reopenable(resume_run):
            run = stack.enter_context(mlflow.start_run(run_id=resume_run))
            with suppress(MlflowException):  # closed as KILLED meanwhile: it lives again
                mlflow.MlflowClient().delete_tag(resume_run, REASON_TAG)
        else:
            experiment = mlflow.set_experiment(params.tracking.experiment)
            run = stack.enter_context(
                mlflow.start_run(experiment_id=experiment.experiment_id, run_name=run_name)
            )
        client = mlflow.MlflowClient()
        mark_model_training(client, run.info.experiment_id)
        mlflow.set_tags(owner_tags())
        for stale in close_orphaned_runs(client, run.info.experiment_id):
            print(f"mlflow: run {stale} was left RUNNING by a process that died; marked KILLED")
        commit = git_commit(root)
        if commit:
            mlflow.set_tag("mlflow.source.git.commit", commit)
        mlflow.log_params(flatten(params.model_dump(by_alias=True, mode="json")))
        yield run


def _reopenable(run_id: str) -> bool:
    try:
        run = mlflow.MlflowClient().get_run(run_id)
    except MlflowException:
        return False
    return run.info.lifecycle_stage == "active"


@contextmanager
def resumed_run(params: Params, run_id: str) -> Iterator[Run]:
    configure(params)
    with mlflow.start_run(run_id=run_id) as run:
        yield run


def log_split_dataset(csv: Path, context: str) -> None:
    """Record a split's manifest as an MLflow dataset input (name, digest, source, schema)."""
    frame = pd.read_csv(csv)
    with warnings.catch_warnings():
        # MLflow registers its local-file source class twice and warns that a path matches
        # "LocalArtifactDatasetSource, LocalArtifactDatasetSource": the same class, harmless.
        warnings.filterwarnings("ignore", message="The specified dataset source can be interpreted")
        # Its schema hint about integer columns is for model inputs, not a logged manifest.
        warnings.filterwarnings("ignore", message="Hint: Inferred schema contains integer")
        dataset = mlflow.data.from_pandas(frame, source=str(csv.resolve()), name=csv.stem)
        mlflow.log_input(dataset, context=context)


def task_metric_values(prefix: str, per_task: dict[str, dict[str, Any]]) -> dict[str, float]:
    """``{"<prefix>/<task>/<metric>": value}`` for MLflow: the numeric metrics of each task,
    without its sample count ``n`` and without NaN (a task with no labelled samples).

    Each task's primary score also goes to ``<prefix>/score_<task>``: the UI's chart view
    makes one section per key up to its last ``/``, in alphabetical order, so these sit in
    the ``<prefix>`` section beside ``<prefix>/score``, the mean: all the scores in one place,
    before the per-task detail sections."""
    values = {
        f"{prefix}/{task}/{name}": float(value)
        for task, values in per_task.items()
        for name, value in values.items()
        if isinstance(value, (int, float)) and name != "n" and not math.isnan(value)
    }
    for task, metrics in per_task.items():
        score = metrics.get("score")
        if isinstance(score, (int, float)) and not math.isnan(score):
            values[f"{prefix}/score_{task}"] = float(score)
    return values


# MLflow 3's UI opens an experiment in its GenAI view unless the experiment says it is model
# training (this tag) or the link asks for the training view (TRAINING_VIEW)
EXPERIMENT_KIND = ("mlflow.experimentKind", "custom_model_development")
TRAINING_VIEW = "workflowType=machine_learning"


def mark_model_training(client: mlflow.MlflowClient, experiment_id: str) -> None:
    """Tag the experiment as model training, so the UI opens it in that view (once)."""
    key, kind = EXPERIMENT_KIND
    if client.get_experiment(experiment_id).tags.get(key) != kind:
        client.set_experiment_tag(experiment_id, key, kind)


def run_url(params: Params, run_id: str, host: str = "http://127.0.0.1:5000") -> str:
    """The run's page in the MLflow UI, in the model training view."""
    run = mlflow.get_run(run_id)
    return f"{host}/#/experiments/{run.info.experiment_id}/runs/{run_id}?{TRAINING_VIEW}"


class MlflowEpochLogger(Callback):
    """Logs each epoch's losses, effective weights and validation metrics (step = epoch).

    The UI's chart view makes a section per key prefix: pairwise matrices (gradient cosine,
    lookahead affinity: T x (T - 1) keys) would bury the scores people compare first. So a
    pair matrix is logged as one summary metric per task (``train/<task>/grad_cosine``: its
    mean cosine with the others; ``train/<task>/affinity_received``: the mean lookahead
    affinity the others give it), and every epoch's pairs as an MLflow table at the end
    (``tables/gradient_cosine.json``, ``tables/affinity.json``; heatmaps are plots).
    """

    def __init__(self, replay: bool = False) -> None:
        self.pairs: dict[str, list[dict[str, Any]]] = {"gradient_cosine": [], "affinity": []}
        self.replay = replay  # a resumed training's first epochs are not in this run yet

    def on_resume(self, history: list[EpochLog]) -> None:
        for log in history:
            self.on_epoch_end(log, log_metrics=self.replay)

    def on_epoch_end(self, log: EpochLog, log_metrics: bool = True) -> None:
        metrics: dict[str, float] = {"train/loss": log.train_loss, "val/score": log.val_score}
        for task, loss in log.task_losses.items():
            metrics[f"train/{task}/loss"] = loss
        for task, weight in log.weights.items():
            metrics[f"weights/{task}"] = weight
        names = list(log.task_losses)
        for table, matrix, summary, given in (
            ("gradient_cosine", log.gradient_cosine, "grad_cosine", False),
            ("affinity", log.affinity, "affinity_received", True),
        ):
            if matrix is None:
                continue
            for j, target in enumerate(names):
                # the cosine is symmetric: a task's row; the affinity a task receives: its column
                values = [matrix[i][j] if given else matrix[j][i] for i in range(len(names))]
                others = [v for i, v in enumerate(values) if i != j and math.isfinite(v)]
                if others:
                    metrics[f"train/{target}/{summary}"] = sum(others) / len(others)
            self.pairs[table] += [
                {"epoch": log.epoch, "source": a, "target": b, "value": matrix[i][j]}
                for i, a in enumerate(names)
                for j, b in enumerate(names)
                if i != j and math.isfinite(matrix[i][j])
            ]
        metrics |= task_metric_values("val", log.val_metrics)
        if log_metrics:
            mlflow.log_metrics(metrics, step=log.epoch)

    def on_train_end(self, result: FitResult) -> None:
        for table, rows in self.pairs.items():
            if rows:
                mlflow.log_table(pd.DataFrame(rows), artifact_file=f"tables/{table}.json")


class EpochPrinter(Callback):
    """One line per epoch, so long training shows progress."""

    def on_train_begin(self, trainer: Trainer) -> None:
        self.epochs = trainer.epochs

    def on_resume(self, history: list[EpochLog]) -> None:
        best = max(history, key=lambda log: log.val_score)
        print(
            f"train: resuming after epoch {history[-1].epoch} of {self.epochs} "
            f"(best val/score {best.val_score:.4f} at epoch {best.epoch})",
            flush=True,
        )

    def on_epoch_end(self, log: EpochLog) -> None:
        worst = min(log.val_metrics.items(), key=lambda kv: kv[1]["score"])
        marker = " *" if log.is_best else ""
        print(
            f"epoch {log.epoch:3d}  loss {log.train_loss:.4f}  val/score {log.val_score:.4f}  "
            f"weakest {worst[0]}={worst[1]['score']:.3f}  {log.seconds:.1f}s{marker}",
            flush=True,
        )
