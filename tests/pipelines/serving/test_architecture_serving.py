"""A model of another architecture than hard sharing (PLE: levels of shared and per-task
experts with gates) goes the whole way: trained by the train stage, logged with its gate
weights, served by `mlflow models serve` with the in-process model's predictions, and its
shared trunk exported."""

from __future__ import annotations

import json
from pathlib import Path

import mlflow
import numpy as np
import pandas as pd
import pytest
import torch
import yaml

from mtl_models.nn.checkpoint import load_checkpoint
from mtl_models.nn.model import example_inputs
from pipelines import stages
from pipelines.config import load_params
from pipelines.files import ProjectPaths
from tests.helpers import run
from tests.serving_support import invoke, model_server

pytestmark = pytest.mark.slow


def table_project(root: Path) -> Path:
    rng = np.random.default_rng(3)
    n = 160
    x = rng.normal(size=(n, 3))
    frame = pd.DataFrame(x, columns=["a", "b", "c"])
    frame["kind"] = np.digitize(x[:, 0] + 0.5 * x[:, 1], [-0.5, 0.5]).astype(float)
    frame.loc[::7, "kind"] = np.nan  # missing labels are masked, under gates too
    frame["value"] = 2 * x[:, 2] - x[:, 1]
    (root / "data").mkdir(parents=True)
    frame.to_csv(root / "data" / "rows.csv", index=False)
    params = {
        "data": {
            "source": "files",
            "dir": "data",
            "table": "rows.csv",
            "inputs": {"x": {"kind": "features", "numeric": ["a", "b", "c"]}},
        },
        "tasks": {
            "kind": {"kind": "classification", "n_classes": 3},
            "value": {"kind": "regression"},
        },
        "augment": {"enabled": False},
        "model": {
            "backbone": {"name": "mlp", "width": 8, "depth": 3},
            "shared_depth": 1,
            "architecture": {"name": "ple", "shared_experts": 2, "task_experts": 1},
            "head_hidden": 16,
        },
        "train": {"epochs": 4, "batch_size": 32, "affinity": {"enabled": True, "every": 2}},
        "tune": {"enabled": False},
        "register": {"model_name": "ple-table"},
        "tracking": {"uri": f"sqlite:///{root / 'mlflow.db'}", "experiment": "ple"},
    }
    (root / "params.yaml").write_text(yaml.safe_dump(params, sort_keys=False))
    return root


def test_a_ple_model_trains_logs_its_gates_serves_and_exports(tmp_path: Path) -> None:
    root = table_project(tmp_path / "p")
    params, paths = load_params(root / "params.yaml"), ProjectPaths(root)
    for stage in ("prepare", "split", "tune", "train"):
        getattr(stages, stage)(params, paths)

    info = json.loads((paths.models_dir / "run.json").read_text())
    mlflow.set_tracking_uri(params.tracking.uri)
    client = mlflow.MlflowClient()
    run_ = client.get_run(info["run_id"])
    assert " ple " in run_.info.run_name
    gates = json.loads(
        Path(
            client.download_artifacts(run_.info.run_id, "gate_weights.json", str(tmp_path))
        ).read_text()
    )
    last = gates["epochs"]["4"]
    assert sorted(last) == ["kind", "value"]
    assert list(last["kind"]) == ["shared 1", "shared 2", "kind 1", "value 1"]
    assert last["kind"]["value 1"] == 0.0 and last["value"]["kind 1"] == 0.0
    for task in last.values():
        assert sum(task.values()) == pytest.approx(1.0, abs=1e-5)
    images = {a.path for a in client.list_artifacts(run_.info.run_id, "images")}
    assert any("gate_weights+step+4" in p for p in images)  # a heatmap per epoch, stepped
    assert "train/value/affinity_received" in run_.data.metrics  # steps the shared experts

    model, spec = load_checkpoint(
        paths.models_dir / "model.pt", paths.models_dir / "model_spec.json"
    )
    assert spec.architecture == "ple" and type(model).__name__ == "PLE"
    rows = [{"a": 0.3, "b": -1.2, "c": 0.8}, {"a": -2.0, "b": 0.1, "c": None}]
    with model_server(info["model_uri"], params.tracking.uri, root) as url:
        response = invoke(url, rows)
    assert response.status_code == 200, response.text
    served = pd.DataFrame(response.json()["predictions"])
    assert set(served["kind"]) <= {0, 1, 2} and len(served) == 2
    (spec_x,) = spec.input_specs()
    x = torch.from_numpy(spec_x.encode(*spec_x.decode_request(pd.DataFrame(rows))))
    with torch.no_grad():
        out = model(x.float())
    decoded = model.decode(out)
    assert served["kind"].tolist() == decoded["kind"].prediction.tolist()
    np.testing.assert_allclose(served["value"], decoded["value"].prediction, rtol=1e-5)
    assert example_inputs(spec.input_specs()).shape == (2, 3)

    exported = run(
        ["mtlflow", "export-backbone", "--out", str(tmp_path / "trunk.safetensors")], root
    )
    assert exported.returncode == 0, exported.stdout + exported.stderr
    assert "tensors of mlp's trunk" in exported.stdout
