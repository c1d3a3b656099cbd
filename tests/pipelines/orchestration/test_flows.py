"""The Prefect flows, run in-process under one session-wide ``prefect_test_harness``, in a real
git + DVC project with tiny params and a SQLite MLflow store."""

from __future__ import annotations

import hashlib
import json
import shutil
from collections.abc import Iterator
from contextlib import contextmanager
from dataclasses import dataclass
from pathlib import Path
from typing import Any
from uuid import UUID

import mlflow
import optuna
import pytest
import yaml

from pipelines.config import load_params
from pipelines.data.splits import split_digest
from pipelines.errors import ConfigError, MtlflowError
from pipelines.files import ProjectPaths
from pipelines.orchestration.dvc import DataStageError, DvcLockedError, dvc_repro
from pipelines.orchestration.flows import (
    FlowContext,
    _is_transient,
    mtl_pipeline,
    override_strings,
    register_stage,
    train,
    tune,
)
from pipelines.services.summaries import registry_line
from tests.conftest import REPO, tiny_params_dict, write_params
from tests.helpers import copy_project, run
from tests.pipelines.prefect_support import flow_run_artifacts, flow_run_logs, task_run_names

TINY = {"tune.n_trials": 1, "train.epochs": 1}  # one trial of one epoch, one epoch of training
MODEL = "tiny-defects"  # register.model_name of the tiny params


@contextmanager
def inside(project: Path) -> Iterator[None]:
    """The project as the working directory, as a deployment's pull step makes it."""
    with pytest.MonkeyPatch.context() as mp:
        mp.chdir(project)
        for var in ("MLFLOW_TRACKING_URI", "MLFLOW_RUN_ID", "MLFLOW_EXPERIMENT_ID"):
            mp.delenv(var, raising=False)
        yield


@dataclass
class FlowRun:
    state: Any

    @property
    def id(self) -> UUID:
        return self.state.state_details.flow_run_id

    @property
    def result(self) -> dict[str, Any]:
        return self.state.result()


def run_flow(flow: Any, project: Path, **parameters: Any) -> FlowRun:
    with inside(project):
        return FlowRun(flow(**parameters, return_state=True))


def locked_md5(project: Path, stage: str) -> str:
    lock = yaml.safe_load((project / "dvc.lock").read_text())
    (out,) = lock["stages"][stage]["outs"]
    return out["md5"]


def tree_digest(path: Path) -> dict[str, str]:
    """Every file under ``path`` -> its sha256: equal digests, untouched files."""
    return {
        str(f.relative_to(path)): hashlib.sha256(f.read_bytes()).hexdigest()
        for f in sorted(path.rglob("*"))
        if f.is_file()
    }


def mlflow_client(project: Path) -> mlflow.MlflowClient:
    return mlflow.MlflowClient(f"sqlite:///{project / 'mlflow.db'}")


def runs_of(project: Path, flow_run_id: UUID) -> list[Any]:
    """The MLflow runs tagged with a Prefect flow run."""
    client = mlflow_client(project)
    experiments = [e.experiment_id for e in client.search_experiments()]
    return client.search_runs(experiments, f"tags.`prefect.flow_run.id` = '{flow_run_id}'")


@dataclass
class Pipeline:
    project: Path
    flow_run: FlowRun
    metrics: dict[str, Any]  # reports/ as the pipeline left them (later tests retrain)
    decision: dict[str, Any]


@pytest.fixture(scope="module")
def pipeline(prefect_harness: None, tmp_path_factory: pytest.TempPathFactory) -> Pipeline:
    project = copy_project(tmp_path_factory.mktemp("flows") / "project")
    flow_run = run_flow(mtl_pipeline, project, overrides=TINY)
    assert flow_run.state.is_completed(), flow_run.state.message
    paths = ProjectPaths(project)
    return Pipeline(
        project,
        flow_run,
        json.loads(paths.metrics_file.read_text()),
        json.loads(paths.registry_file.read_text()),
    )


@pytest.mark.slow
def test_pipeline_flow_runs_the_stages_in_order_and_registers_the_model(pipeline):
    assert task_run_names(pipeline.flow_run.id, count=8) == [
        "prepare (dvc repro)",
        "split (dvc repro)",
        "tune",
        "baselines",
        "train",
        "evaluate",
        "register",
        "publish reports",
    ]
    result = pipeline.flow_run.result
    assert result["model_version"] == 1 and result["promoted"] is True
    client = mlflow_client(pipeline.project)
    assert client.get_model_version(MODEL, "1").run_id == result["mlflow_run_id"]
    assert str(client.get_model_version_by_alias(MODEL, "champion").version) == "1"
    run = client.get_run(result["mlflow_run_id"])
    assert run.info.status == "FINISHED"
    assert run.info.run_name.startswith("mtl-pipeline/")
    assert run.data.tags["mtlflow.flow"] == "mtl-pipeline"
    assert {"val/score", "test/score"} <= set(run.data.metrics)
    assert run.data.params["train.epochs"] == "1"  # the flow's override reached train
    assert json.loads(run.data.tags["mtlflow.overrides"]) == TINY


@pytest.mark.slow
def test_the_split_is_the_one_dvc_repro_makes_and_every_mlflow_run_records_it(pipeline, tmp_path):
    project, flow_run_id = pipeline.project, pipeline.flow_run.id
    md5 = locked_md5(project, "split")
    assert pipeline.flow_run.result["splits_md5"] == md5

    other = copy_project(tmp_path / "other")  # same params, plain `dvc repro`
    repro = run(["dvc", "repro", "split"], other)
    assert repro.returncode == 0, repro.stdout[-2000:] + repro.stderr[-2000:]
    assert locked_md5(other, "split") == md5
    assert locked_md5(other, "prepare") == locked_md5(project, "prepare")
    status = run(["dvc", "status", "prepare", "split"], project)
    assert "up to date" in status.stdout, status.stdout

    runs = {r.info.run_id: r for r in runs_of(project, flow_run_id)}
    root = runs[pipeline.flow_run.result["mlflow_run_id"]]
    (tune,) = [r for r in runs.values() if r.data.tags.get("mtlflow.stage") == "tune"]
    (trial,) = [r for r in runs.values() if r.info.run_name == "trial-0"]
    assert len(runs) == 3
    assert tune.data.tags["mlflow.parentRunId"] == root.info.run_id
    assert trial.data.tags["mlflow.parentRunId"] == tune.info.run_id
    for tagged in runs.values():
        assert tagged.info.experiment_id == root.info.experiment_id  # trials included
        assert tagged.data.tags["dvc.splits.md5"] == md5
        assert tagged.data.tags["dvc.raw.md5"] == locked_md5(project, "prepare")
    assert root.data.tags["data.split_sha256"] == split_digest(ProjectPaths(project))


@pytest.mark.slow
def test_artifacts_give_test_metrics_registry_decision_and_mlflow_links(pipeline):
    artifacts = flow_run_artifacts(pipeline.flow_run.id)
    assert set(artifacts) == {
        "mtlflow-model-report",
        "mtlflow-test-metrics",
        "mtlflow-tuning-report",
    }
    run_id = pipeline.flow_run.result["mlflow_run_id"]
    experiment = mlflow_client(pipeline.project).get_run(run_id).info.experiment_id
    report = artifacts["mtlflow-model-report"].data
    link = f"http://127.0.0.1:5000/#/experiments/{experiment}/runs/{run_id}"
    assert f"({link}?workflowType=machine_learning)" in report  # opens the training view
    kind = mlflow_client(pipeline.project).get_experiment(experiment).tags
    assert kind["mlflow.experimentKind"] == "custom_model_development"
    assert f"[version 1](http://127.0.0.1:5000/#/models/{MODEL}/versions/1)" in report
    assert "promoted to `@champion` (no `@champion` before)" in report
    assert f"md5 `{locked_md5(pipeline.project, 'split')}`" in report
    for task, m in pipeline.metrics["tasks"].items():
        assert f"| {task} | {m['kind']} | {m['score']:.3f} | " in report

    table = artifacts["mtlflow-test-metrics"].data
    rows = json.loads(table) if isinstance(table, str) else table
    assert [row["task"] for row in rows] == list(pipeline.metrics["tasks"])
    for row in rows:
        assert row["score"] == round(pipeline.metrics["tasks"][row["task"]]["score"], 6)

    tuning = artifacts["mtlflow-tuning-report"].data
    assert "best trial 0" in tuning and "| `train.lr` |" in tuning


@pytest.mark.slow
def test_flow_run_logs_follow_each_stage(pipeline):
    expected = (
        "Running stage 'split'",  # DVC's own output
        "split: train ",  # the split stage, under dvc repro
        "tune: trial   0 complete",
        "epoch   1  loss",
        f"register: {MODEL} version 1 is now @champion",
    )
    logs = flow_run_logs(pipeline.flow_run.id, *expected)
    for text in expected:
        assert text in logs


@pytest.mark.slow
def test_register_never_registers_the_flow_runs_model_twice(pipeline):
    """What a retry of the register task finds after an attempt that registered, then failed."""
    project, run_id = pipeline.project, pipeline.flow_run.result["mlflow_run_id"]
    client = mlflow_client(project)
    with inside(project):
        params = load_params(Path("params.yaml"))
        ctx = FlowContext(params, ProjectPaths(project), run_id)
        with pytest.raises(MtlflowError, match="version 1 is already registered from MLflow run"):
            register_stage.fn(ctx)
    assert len(client.search_model_versions(f"name = '{MODEL}' and run_id = '{run_id}'")) == 1


@pytest.mark.slow
def test_tune_flow_continues_the_study_and_trains_nothing(pipeline):
    project = pipeline.project
    models = tree_digest(project / "models")
    tuned = run_flow(tune, project, overrides={"tune.n_trials": 2})
    assert tuned.state.is_completed(), tuned.state.message

    best = yaml.safe_load((project / "reports/best_params.yaml").read_text())
    study = optuna.load_study(study_name=best["study"], storage=best["storage"])
    assert len(study.trials) == 2  # the pipeline's trial 0, and one more
    assert "1 finished trials, 1 to run" in flow_run_logs(tuned.id, "1 to run")
    assert set(flow_run_artifacts(tuned.id)) == {"mtlflow-tuning-report"}
    names = sorted(r.info.run_name.split("/")[0] for r in runs_of(project, tuned.id))
    assert names == ["trial-1", "tune", "tune"]  # the flow's run, the tune run, the trial
    assert tree_digest(project / "models") == models


@pytest.mark.slow
def test_train_flow_retrains_with_overrides_winning_over_tuned_values(pipeline):
    project = pipeline.project
    split_md5 = locked_md5(project, "split")
    trained = run_flow(train, project, overrides={"train.epochs": 1, "train.lr": 0.001})
    assert trained.state.is_completed(), trained.state.message
    assert task_run_names(trained.id, count=6) == [
        "prepare (dvc repro)",
        "split (dvc repro)",
        "train",
        "evaluate",
        "register",
        "publish reports",
    ]
    result = trained.result
    assert result["model_version"] == pipeline.decision["version"] + 1
    client = mlflow_client(project)
    version = client.get_model_version(MODEL, str(result["model_version"]))
    assert version.run_id == result["mlflow_run_id"]
    # train.lr is in the search space, so tuning set it; the flow's override wins
    assert client.get_run(result["mlflow_run_id"]).data.params["train.lr"] == "0.001"
    assert locked_md5(project, "split") == split_md5  # DVC found the split up to date
    report = flow_run_artifacts(trained.id)["mtlflow-model-report"].data
    assert f"[version {result['model_version']}]" in report


@pytest.mark.slow
def test_a_failing_stage_fails_the_flow_run_with_its_error_and_keeps_earlier_outputs(pipeline):
    project = pipeline.project
    paths = ProjectPaths(project)
    kept = (paths.models_dir, paths.splits_dir, paths.reports_dir)
    before = [tree_digest(path) for path in kept]
    client = mlflow_client(project)
    versions = len(client.search_model_versions(f"name = '{MODEL}'"))
    params_file = project / "params.yaml"
    original = params_file.read_text()
    raw = yaml.safe_load(original)
    raw["tasks"]["scratches_left"]["n_classes"] = 3  # the data rates it 0-5
    params_file.write_text(yaml.safe_dump(raw, sort_keys=False))
    try:
        failed = run_flow(train, project)
    finally:
        params_file.write_text(original)

    assert failed.state.is_failed()
    assert "`dvc repro split` failed" in failed.state.message
    logs = flow_run_logs(failed.id, "invalid labels", "expected an integer 0..2")
    assert "manifest.csv: invalid labels" in logs
    assert "column 'scratches_left': got" in logs and "expected an integer 0..2" in logs
    # DVC removed the split before running the stage; the flow checked it out again
    assert [tree_digest(path) for path in kept] == before
    assert not list(paths.splits_dir.parent.glob(".splits.*"))  # no scratch left behind
    assert runs_of(project, failed.id) == []  # it failed before opening an MLflow run
    assert len(client.search_model_versions(f"name = '{MODEL}'")) == versions


@pytest.mark.slow
def test_a_dvc_repro_that_finds_the_project_locked_is_a_transient_failure(pipeline):
    from dvc.lock import make_lock

    tmp = pipeline.project / ".dvc" / "tmp"
    lock = make_lock(str(tmp / "lock"), tmp_dir=str(tmp))
    lock.lock()  # what another `dvc` process holds while it runs
    try:
        with pytest.raises(DvcLockedError, match="another DVC process holds"):
            dvc_repro("split", pipeline.project, log=lambda line: None)
    finally:
        lock.unlock()


@pytest.fixture
def bare_project(tmp_path: Path) -> Path:
    """dvc.yaml and tiny params, no data: enough for the checks a flow makes first."""
    shutil.copy2(REPO / "dvc.yaml", tmp_path / "dvc.yaml")
    write_params(tmp_path, tiny_params_dict(tmp_path))
    return tmp_path


@pytest.mark.slow
@pytest.mark.parametrize(
    ("parameters", "message"),
    [
        (
            {"overrides": {"data.synthetic.n_samples": 200}},
            "data.synthetic.n_samples: 120 in params.yaml, 200 here",
        ),
        ({"overrides": {"split.seed": 1}}, "split.seed: 42 in params.yaml, 1 here"),
        ({"overrides": {"train.lrr": 0.1}}, "train.lrr: Extra inputs are not permitted"),
        ({"overrides": {"augment.geometric": [{"name": "Nope"}]}}, "augment.geometric"),
        ({"params_file": "missing.yaml"}, "missing.yaml: params file not found"),
        ({"overrides": {"train lr": 1}}, "overrides.train lr.[key]: String should match"),
        ({"params_file": "params.json"}, "params_file: String should match pattern"),
    ],
)
def test_bad_parameters_fail_the_flow_run_before_any_work(
    prefect_harness, bare_project, parameters, message
):
    failed = run_flow(mtl_pipeline, bare_project, **parameters)
    assert failed.state.is_failed()
    assert message in failed.state.message
    assert sorted(p.name for p in bare_project.iterdir()) == ["dvc.yaml", "params.yaml"]


@pytest.mark.parametrize(
    "value", [3e-4, 1e-05, None, True, "uw", "3e-4", {"method": "uw"}, [32, 64]]
)
def test_override_values_reach_load_params_unchanged(value):
    (item,) = override_strings({"a.b": value})
    key, _, text = item.partition("=")
    assert key == "a.b" and yaml.safe_load(text) == value


def test_overrides_of_a_mapping_give_typed_params(tmp_path):
    path = write_params(tmp_path, tiny_params_dict(tmp_path))
    overrides = {"train.lr": 1e-05, "train.weighting": {"method": "uw"}, "train.patience": None}
    params = load_params(path, override_strings(overrides))
    assert params.train.lr == 1e-05
    assert params.train.weighting.method == "uw"
    assert params.train.patience is None


@pytest.mark.parametrize(
    ("error", "retried"),
    [
        (DvcLockedError("another DVC process holds the project"), True),
        (OSError("database is locked"), True),
        (DataStageError("`dvc repro split` failed"), False),
        (ConfigError("params.yaml: invalid parameters"), False),
    ],
)
def test_only_transient_failures_are_retried(error, retried):
    from prefect.states import Failed

    assert _is_transient(None, None, Failed(data=error)) is retried


def test_registry_line_says_when_the_champion_stays():
    decision = {
        "model_name": "m",
        "version": 3,
        "alias": "champion",
        "promoted": False,
        "score": 0.5,
        "champion_version": 2,
        "previous_champion_version": 2,
        "previous_champion_score": 0.75,
    }
    assert registry_line(decision, "URL") == (
        "`m` [version 3](URL), mean test score 0.5000: registered; "
        "`@champion` stays on version 2 (0.7500)"
    )
