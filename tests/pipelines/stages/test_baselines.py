"""`mtlflow baselines`: a single-task model per task under one MLflow parent, then Δm in
evaluate (metrics.json, the training run) and the diagnosis report."""

from __future__ import annotations

import json
from collections.abc import Iterator
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import mlflow
import pytest
from mlflow import MlflowClient

from mtl_models.metrics import delta_m
from pipelines import stages
from pipelines.config import Params, load_params
from pipelines.files import ProjectPaths
from pipelines.services.baselines import single_task_params
from tests.conftest import tiny_params_dict, write_params
from tests.helpers import run

pytestmark = pytest.mark.slow

REGIONS = ("left", "center", "right")
TASKS = [f"{defect}_{r}" for defect in ("scratches", "pits", "corrosion") for r in REGIONS]


@dataclass
class Compared:
    params: Params
    paths: ProjectPaths
    baselines: dict[str, Any]
    run_info: dict[str, Any]
    metrics: dict[str, Any]

    @property
    def client(self) -> MlflowClient:
        return MlflowClient(self.params.tracking.uri)


def _learnable_params(root: Path) -> dict[str, Any]:
    """Tiny params that learn a little in seconds, so some single-task scores are positive."""
    raw = tiny_params_dict(root)
    raw["data"]["synthetic"]["n_samples"] = 240
    raw["train"] |= {"epochs": 6, "lr": 0.01}
    raw["tune"]["enabled"] = False
    raw["baselines"] = {"enabled": True}
    return raw


@pytest.fixture(scope="module")
def compared(tmp_path_factory: pytest.TempPathFactory) -> Iterator[Compared]:
    root = tmp_path_factory.mktemp("baselines")
    with pytest.MonkeyPatch.context() as mp:
        mp.chdir(root)
        mp.delenv("MLFLOW_TRACKING_URI", raising=False)
        params = load_params(write_params(root, _learnable_params(root)))
        paths = ProjectPaths(root)
        stages.prepare(params, paths)
        stages.split(params, paths)
        report = stages.baselines(params, paths)
        run_info = stages.train(params, paths)
        metrics = stages.evaluate(params, paths)
        yield Compared(params, paths, report, run_info, metrics)


def test_single_task_params_keep_the_budget_and_drop_what_needs_several_tasks(project):
    params, _ = project
    params = load_params(
        Path("params.yaml"),
        ["train.weighting.method=uw", "train.affinity.enabled=true", "model.head_hidden=32"],
    )
    single = single_task_params(params, "pits_left")
    assert list(single.tasks) == ["pits_left"]
    assert single.tasks["pits_left"] == params.tasks["pits_left"]
    assert single.model == params.model
    assert (single.train.epochs, single.train.lr, single.train.batch_size) == (
        params.train.epochs,
        params.train.lr,
        params.train.batch_size,
    )
    assert single.train.weighting.method == "equal"
    assert not single.train.affinity.enabled
    assert single.augment.remaps == {} and params.augment.remaps
    assert single.augment.geometric == params.augment.geometric


def test_one_nested_run_per_task_under_one_parent_with_its_test_scores(compared):
    report = compared.baselines
    assert report["enabled"] and list(report["tasks"]) == TASKS
    assert report["epochs"] == 6
    client = compared.client
    parent = client.get_run(report["mlflow_run_id"])
    assert parent.data.tags["mtlflow.stage"] == "baselines"
    children = client.search_runs(
        [parent.info.experiment_id],
        filter_string=f"tags.mlflow.parentRunId = '{parent.info.run_id}'",
    )
    assert sorted(r.data.tags["mtlflow.task"] for r in children) == sorted(TASKS)
    for child in children:
        task = child.data.tags["mtlflow.task"]
        entry = report["tasks"][task]
        assert entry["run_id"] == child.info.run_id
        assert child.data.params["train.weighting.method"] == "equal"
        assert child.data.params["train.epochs"] == "6"
        assert f"tasks.{task}.kind" in child.data.params
        assert not any(k.startswith("tasks.") and task not in k for k in child.data.params)
        assert child.data.metrics[f"test/{task}/qwk"] == pytest.approx(entry["score"])
        history = client.get_metric_history(child.info.run_id, f"val/{task}/qwk")
        assert 1 <= len(history) <= 6  # one per epoch (early stopping is off in tiny params)
        assert parent.data.metrics[f"baseline/{task}/score"] == pytest.approx(entry["score"])


def test_images_get_no_gradient_boosting_only_a_note_saying_why(compared):
    """Trees read table rows: for the defect images the report and evaluate say so."""
    boosted = compared.baselines["gradient_boosting"]
    assert boosted == {
        "enabled": False,
        "note": "gradient boosting skipped: it reads table (features) inputs only, "
        "not 'image' (image)",
    }
    assert compared.metrics["gradient_boosting"] == {"note": boosted["note"]}
    client = compared.client
    run = client.get_run(compared.run_info["run_id"])
    assert "test/delta_m_gradient_boosting" not in run.data.metrics
    parent = client.get_run(compared.baselines["mlflow_run_id"])
    assert not any(k.startswith("gradient_boosting/") for k in parent.data.metrics)


def test_a_lone_left_or_right_task_trains_without_the_horizontal_flip(compared):
    tasks = compared.baselines["tasks"]
    for task in TASKS:
        excluded = set(tasks[task]["excluded_transforms"])
        assert ("HorizontalFlip" in excluded) is (not task.endswith("_center")), task
        assert "VerticalFlip" not in excluded


def test_evaluate_reports_delta_m_and_gains_as_the_formula_gives(compared):
    block = compared.metrics["baselines"]
    on_disk = json.loads(compared.paths.metrics_file.read_text())["baselines"]
    assert on_disk["delta_m"] == pytest.approx(block["delta_m"])
    single = {t: e["score"] for t, e in compared.baselines["tasks"].items()}
    multi = {t: m["score"] for t, m in compared.metrics["tasks"].items()}
    compared_tasks = [t for t in TASKS if single[t] > 0]
    assert compared_tasks, "no task learned alone: the fixture is too small to test Δm"
    assert sorted(block["tasks"]) == sorted(compared_tasks)
    assert sorted(block["excluded"]) == sorted(set(TASKS) - set(compared_tasks))
    expected = sum((multi[t] - single[t]) / single[t] for t in compared_tasks) / len(compared_tasks)
    assert block["delta_m"] == pytest.approx(expected)
    assert block["delta_m"] == pytest.approx(
        delta_m({t: multi[t] for t in compared_tasks}, {t: single[t] for t in compared_tasks})[0]
    )
    for task in compared_tasks:
        row = block["tasks"][task]
        assert (row["multi_task"], row["single_task"]) == (multi[task], single[task])

    run = compared.client.get_run(compared.run_info["run_id"])
    assert run.data.metrics["test/delta_m"] == pytest.approx(block["delta_m"])
    for task in compared_tasks:
        assert run.data.metrics[f"test/{task}/gain"] == pytest.approx(block["tasks"][task]["gain"])
        assert run.data.metrics[f"test/{task}/single_task_score"] == pytest.approx(single[task])
    assert run.data.tags["mtlflow.baselines_run"] == compared.baselines["mlflow_run_id"]


def test_the_diagnosis_report_carries_the_gains_and_is_logged(compared):
    text = compared.paths.diagnosis_file.read_text()
    assert f"**Δm = {compared.metrics['baselines']['delta_m']:+.2%}**" in text
    for task in TASKS:
        assert f"### {task}" in text
    mlflow.set_tracking_uri(compared.params.tracking.uri)
    artifacts = {a.path for a in compared.client.list_artifacts(compared.run_info["run_id"])}
    assert {"diagnosis.md", "metrics.json"} <= artifacts


def test_baselines_of_another_split_are_not_compared(compared, tmp_path):
    paths = ProjectPaths(tmp_path)
    paths.reports_dir.mkdir(parents=True)
    stale = dict(compared.baselines, split_sha256="0" * 64)
    paths.baselines_file.write_text(json.dumps(stale))
    from pipelines.services.comparison import compare_with_baselines

    block = compare_with_baselines(compared.metrics["tasks"], stale, split_sha256="1" * 64)
    assert "delta_m" not in block and "another split" in block["note"]


def test_disabled_baselines_write_a_note_and_start_no_run(project, capsys):
    params, paths = project
    report = stages.baselines(params, paths)  # no split needed: nothing is trained
    assert report["enabled"] is False
    assert json.loads(paths.baselines_file.read_text()) == report
    assert "baselines.enabled=true" in capsys.readouterr().out
    assert MlflowClient(params.tracking.uri).search_experiments(filter_string="name='tests'") == []


def test_cli_verb_and_a_bad_split_fail_before_any_run(tmp_path):
    raw = tiny_params_dict(tmp_path)
    raw["baselines"] = {"enabled": True}
    write_params(tmp_path, raw)
    result = run(["mtlflow", "baselines"], tmp_path)
    assert result.returncode == 2
    assert "data/splits/train: not found; run `mtlflow split`" in result.stderr
    assert not (tmp_path / "reports" / "baselines.json").exists()
    assert not (tmp_path / "mlruns").exists()


def test_evaluate_without_baselines_says_how_to_get_them(pipeline_run):
    block = json.loads(pipeline_run.paths.metrics_file.read_text())["baselines"]
    assert "delta_m" not in block
    assert "mtlflow baselines --set baselines.enabled=true" in block["note"]
    assert "Δm: no single-task baselines" in pipeline_run.paths.diagnosis_file.read_text()
