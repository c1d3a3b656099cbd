"""Affinity in `train`: per-epoch MLflow metrics and heatmaps, the report and a grouping."""

from __future__ import annotations

import json
from pathlib import Path

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
    # per task, the mean affinity the others give it (a chart each); the pairs in a table
    history = client.get_metric_history(run_info["run_id"], "train/pits_right/affinity_received")
    assert [m.step for m in history] == [1, 2]
    for m, epoch in zip(history, ("1", "2"), strict=True):
        given = [
            row["pits_right"]
            for source, row in report["per_epoch"][epoch].items()
            if source != "pits_right"
        ]
        assert m.value == pytest.approx(sum(given) / len(given), abs=1e-6)
    table = json.loads(
        Path(
            client.download_artifacts(run_info["run_id"], "tables/affinity.json", str(paths.root))
        ).read_text()
    )
    rows = [dict(zip(table["columns"], row, strict=True)) for row in table["data"]]
    pair = [r["value"] for r in rows if (r["source"], r["target"]) == ("pits_left", "pits_right")]
    assert pair == pytest.approx(
        [report["per_epoch"][e]["pits_left"]["pits_right"] for e in ("1", "2")], abs=1e-6
    )
    assert not any(
        key.startswith("affinity/") for key in client.get_run(run_info["run_id"]).data.metrics
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
    assert not any("affinity" in key for key in metrics)


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
