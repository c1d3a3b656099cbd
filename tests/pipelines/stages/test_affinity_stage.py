"""Affinity in `train`: per-epoch MLflow metrics and heatmaps, the report and a grouping."""

from __future__ import annotations

import json

import mlflow
import pytest

from pipelines import stages
from pipelines.config import load_params

pytestmark = pytest.mark.slow


def test_train_with_affinity_logs_every_pair_per_epoch_and_suggests_groups(project):
    params, paths = project
    stages.prepare(params, paths)
    stages.split(params, paths)
    params = load_params(
        paths.root / "params.yaml",
        ["train.affinity.enabled=true", "train.affinity.every=1", "train.affinity.max_groups=2"],
    )
    run_info = stages.train(params, paths)

    report = json.loads(paths.affinity_file.read_text())
    names = list(params.tasks)
    assert report["enabled"] and report["every"] == 1
    assert list(report["matrix"]) == names and list(report["per_epoch"]) == ["1", "2"]
    groups = report["grouping"]["groups"]
    assert 1 <= len(groups) <= 2 and sorted(n for g in groups for n in g) == sorted(names)
    assert (paths.plots_dir / "affinity.png").stat().st_size > 0

    client = mlflow.MlflowClient(params.tracking.uri)
    history = client.get_metric_history(run_info["run_id"], "affinity/pits_left/pits_right")
    assert [m.step for m in history] == [1, 2]
    for m, epoch in zip(history, ("1", "2"), strict=True):
        assert m.value == pytest.approx(
            report["per_epoch"][epoch]["pits_left"]["pits_right"], abs=1e-6
        )
    artifacts = {a.path for a in client.list_artifacts(run_info["run_id"], "plots")}
    assert {"plots/affinity.png", "plots/affinity_over_epochs.png"} <= artifacts
    per_epoch = {a.path for a in client.list_artifacts(run_info["run_id"], "plots/affinity")}
    assert per_epoch == {"plots/affinity/epoch_001.png", "plots/affinity/epoch_002.png"}


def test_train_without_affinity_writes_a_disabled_report(project):
    params, paths = project
    stages.prepare(params, paths)
    stages.split(params, paths)
    params = load_params(paths.root / "params.yaml", ["train.affinity.enabled=false"])
    run_info = stages.train(params, paths)
    assert json.loads(paths.affinity_file.read_text())["enabled"] is False
    metrics = mlflow.MlflowClient(params.tracking.uri).get_run(run_info["run_id"]).data.metrics
    assert not any(key.startswith("affinity/") for key in metrics)


def test_with_nothing_shared_training_runs_and_the_report_says_why_no_affinity(project, capsys):
    params, paths = project
    stages.prepare(params, paths)
    stages.split(params, paths)
    params = load_params(paths.root / "params.yaml", ["model.shared_depth=0"])
    assert params.train.affinity.enabled  # on by default in params.yaml
    stages.train(params, paths)
    report = json.loads(paths.affinity_file.read_text())
    assert report == {"enabled": False, "note": "no shared blocks to step (shared_depth=0)"}
    assert "no task affinity measured" in capsys.readouterr().out
