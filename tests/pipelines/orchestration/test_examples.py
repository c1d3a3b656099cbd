"""The shipped examples: each params file is valid, and each runs end to end (shrunk) into
MLflow with per-task test metrics; the tabular one is served from raw feature columns."""

from __future__ import annotations

import json
import math
import shutil
from pathlib import Path

import mlflow
import pandas as pd
import pytest
import yaml
from typer.testing import CliRunner

from pipelines import stages
from pipelines.cli import app
from pipelines.config import load_params, parse_params
from pipelines.files import ProjectPaths
from tests.conftest import REPO
from tests.helpers import run
from tests.serving_support import invoke, model_server

EXAMPLES = REPO / "examples"
NAMES = ("penguins", "multimnist", "signals", "flowers", "transfer")
OVERRIDES = ("--set", "tune.n_trials=2", "--set", "tune.epochs=5", "--set", "train.epochs=60")


def shrunk(name: str, root: Path, **sections: dict) -> dict:
    """The example's params with tracking and the study in ``root``, sections overlaid."""
    raw = yaml.safe_load((EXAMPLES / name / "params.yaml").read_text())
    name = name.replace("/", "-")
    raw["tracking"] = {"uri": f"sqlite:///{root / 'mlflow.db'}", "experiment": f"ex-{name}"}
    raw["tune"] = {**raw["tune"], "storage": f"sqlite:///{root / 'optuna.db'}"}
    for key, values in sections.items():
        raw[key] = {**raw.get(key, {}), **values}
    return raw


@pytest.mark.parametrize("name", NAMES)
def test_every_example_params_file_is_valid(name):
    params = load_params(EXAMPLES / name / "params.yaml")
    assert params.data.source != "files" and params.registry.model_name == f"mtlflow-{name}"


def run_stages(raw: dict, root: Path, monkeypatch: pytest.MonkeyPatch) -> dict:
    monkeypatch.chdir(root)
    params, paths = parse_params(raw, source="example"), ProjectPaths(root)
    for stage in ("prepare", "split", "tune", "train", "evaluate", "register"):
        getattr(stages, stage)(params, paths)
    return json.loads(paths.metrics_file.read_text())


def logged_test_scores(root: Path, experiment: str) -> dict[str, float]:
    mlflow.set_tracking_uri(f"sqlite:///{root / 'mlflow.db'}")
    (run_,) = mlflow.search_runs(
        experiment_names=[experiment],
        filter_string="tags.`mtlflow.stage` = 'train'",
        output_format="list",
    )
    metrics = run_.data.metrics
    return {
        k: v
        for k, v in metrics.items()
        if k.startswith("test/") and k.count("/") == 2 and k.endswith("/score")
    }


def test_signals_example_fuses_two_signals_and_readings_end_to_end(tmp_path, monkeypatch):
    raw = shrunk(
        "signals",
        tmp_path,
        train={"epochs": 3, "patience": None},
        data={"synthetic": {"n_samples": 90}},
    )
    metrics = run_stages(raw, tmp_path, monkeypatch)
    assert set(metrics["tasks"]) == {"material", "quality"}
    assert metrics["tasks"]["quality"]["kind"] == "regression"
    spec = json.loads((tmp_path / "models" / "model_spec.json").read_text())
    assert [i["kind"] for i in spec["inputs"]] == ["signal", "features"]
    assert set(logged_test_scores(tmp_path, "ex-signals")) == {
        "test/material/score",
        "test/quality/score",
    }


def test_multimnist_example_reads_its_headerless_manifest_end_to_end(tmp_path, monkeypatch):
    raw = shrunk(
        "multimnist",
        tmp_path,
        train={"epochs": 1, "patience": None, "affinity": {"enabled": False}},
        data={"synthetic": {"n_samples": 120, "seed": 0}},
    )
    metrics = run_stages(raw, tmp_path, monkeypatch)
    first = (tmp_path / "data" / "raw" / "manifest.csv").read_text().splitlines()[0]
    assert first.startswith("images/00000.png,")  # no header line
    assert set(metrics["tasks"]) == {"left_digit", "right_digit"}
    assert all(math.isfinite(m["score"]) for m in metrics["tasks"].values())
    assert len(logged_test_scores(tmp_path, "ex-multimnist")) == 2


def test_transfer_example_pretrains_exports_and_fine_tunes_on_disjoint_labels(
    tmp_path, monkeypatch
):
    """The two projects of examples/transfer, shrunk: the exported trunk is what the second
    starts from, and each of its tasks is scored on the images labelled for it."""
    source = tmp_path / "pretrain"
    source.mkdir()
    raw = shrunk(
        "transfer/pretrain",
        source,
        train={"epochs": 1, "patience": None},
        data={"synthetic": {"n_samples": 150, "seed": 0}},
    )
    run_stages(raw, source, monkeypatch)
    exported = CliRunner().invoke(app, ["export-backbone", "--out", "../backbone.safetensors"])
    assert exported.exit_code == 0, exported.output

    # one process, two projects: what mlflow exported for the first must not steer the second
    monkeypatch.delenv("MLFLOW_TRACKING_URI", raising=False)
    monkeypatch.delenv("MLFLOW_EXPERIMENT_ID", raising=False)
    target = tmp_path / "target"
    target.mkdir()
    raw = shrunk(
        "transfer",
        target,
        train={"epochs": 2, "patience": None, "fine_tune": {"freeze_epochs": 1}},
        data={"synthetic": {"n_samples": 120, "seed": 0}},
    )
    raw["model"]["backbone"]["weights"] = "../backbone.safetensors"  # the example's: ./
    metrics = run_stages(raw, target, monkeypatch)
    manifest = pd.read_csv(target / "data" / "raw" / "manifest.csv")
    assert len(manifest) == 120
    assert not (manifest["digit"].notna() & manifest["bold"].notna()).any()  # disjoint labels
    assert set(metrics["tasks"]) == {"digit", "bold"}
    assert all(math.isfinite(m["score"]) for m in metrics["tasks"].values())
    mlflow.set_tracking_uri(f"sqlite:///{target / 'mlflow.db'}")
    (run_,) = mlflow.search_runs(
        experiment_names=["ex-transfer"],
        filter_string="tags.`mtlflow.stage` = 'train'",
        output_format="list",
    )
    assert "backbone.safetensors" in run_.data.tags["mtlflow.backbone_start"]


@pytest.mark.slow
def test_penguins_example_runs_with_one_command_and_serves_raw_features(tmp_path):
    """`mtlflow run` in a copy of examples/penguins, then `mlflow models serve` on the
    registered model, sent raw rows: measurements in mm, a missing value."""
    project = tmp_path / "examples" / "penguins"
    shutil.copytree(EXAMPLES / "penguins", project)
    result = run(
        ["mtlflow", "run", *OVERRIDES],
        project,
    )
    assert result.returncode == 0, result.stdout[-3000:] + result.stderr[-3000:]
    metrics = json.loads((project / "reports" / "metrics.json").read_text())
    tasks = metrics["tasks"]
    assert set(tasks) == {"species", "sex", "island", "body_mass_g"}
    # every task learns, the easy ones clearly
    assert metrics["summary"]["collapsed_tasks"] == []
    assert sorted(metrics["summary"]["tasks_beating_majority"]) == sorted(tasks)
    assert tasks["species"]["score"] > 0.85 and tasks["body_mass_g"]["score"] > 0.5
    tracking_uri = f"sqlite:///{tmp_path / 'mlflow.db'}"  # the example's ../../mlflow.db
    assert len(logged_test_scores(tmp_path, "mtlflow-penguins")) == 4

    rows = [
        {"bill_length_mm": 39.1, "bill_depth_mm": 18.7, "flipper_length_mm": 181, "year": 2007},
        {"bill_length_mm": 46.5, "bill_depth_mm": 13.5, "flipper_length_mm": 210, "year": 2008},
        {"bill_length_mm": None, "bill_depth_mm": 17.9, "flipper_length_mm": 195, "year": 2009},
    ]
    with model_server("models:/mtlflow-penguins@champion", tracking_uri, project) as url:
        response = invoke(url, rows)
        assert response.status_code == 200, response.text
        predictions = response.json()["predictions"]
        bad = invoke(url, [{**rows[0], "flipper_length_mm": "long"}])
        missing = invoke(url, [{k: v for k, v in rows[0].items() if k != "year"}])
    assert [p["species"] for p in predictions[:2]] == ["Adelie", "Gentoo"]
    assert all(p["sex"] in ("female", "male") for p in predictions)
    assert all(2500 < p["body_mass_g"] < 6500 for p in predictions)  # grams, not z-scores
    assert all(len(p["species_proba"]) == 3 for p in predictions)
    assert bad.status_code == 400 and "flipper_length_mm" in bad.json()["message"]
    assert missing.status_code == 400 and "year" in missing.json()["message"]
