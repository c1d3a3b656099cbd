"""Shared fixtures: a tiny params file and one real pipeline run (SQLite MLflow store in tmp)."""

from __future__ import annotations

import os
import tempfile
from collections.abc import Iterator
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import pytest
import yaml

from pipelines.config import Params, load_params, parse_params
from pipelines.files import ProjectPaths

REPO = Path(__file__).resolve().parents[1]

os.environ.setdefault("MLFLOW_DISABLE_TELEMETRY", "true")
os.environ.setdefault("GIT_PYTHON_REFRESH", "quiet")
os.environ.setdefault("DVC_NO_ANALYTICS", "1")  # no daemon per dvc command, no file it leaves

# The machine's temporary folder, before ``_temporary_files_in_basetemp`` moves it: for what
# another user must reach (the PostgreSQL cluster of ``pg_support`` runs as ``postgres``).
SYSTEM_TMP = tempfile.gettempdir()


def tiny_params_dict(root: Path) -> dict[str, Any]:
    """The shipped params.yaml shrunk to seconds: few images, a small net, two epochs."""
    raw = yaml.safe_load((REPO / "params.yaml").read_text())
    raw["data"]["synthetic"] |= {"n_samples": 120, "image_size": 32}
    raw["model"] |= {
        "backbone": {"name": "cnn", "width": 8, "depth": 2},
        "shared_depth": 1,
        "head_hidden": 16,
    }
    raw["train"] |= {"epochs": 2, "batch_size": 32, "patience": None}
    raw["tune"] |= {"n_trials": 2, "epochs": 1, "storage": f"sqlite:///{root / 'optuna.db'}"}
    raw["tune"]["search_space"]["model.shared_depth"] = {"low": 1, "high": 2}
    raw["tracking"] = {"uri": f"sqlite:///{root / 'mlflow.db'}", "experiment": "tests"}
    raw["register"] = {"model_name": "tiny-defects", "alias": "champion"}
    return raw


def shipped_tune_params(**tune: Any) -> Params:
    """The shipped params.yaml with the given keys of its ``tune`` section replaced."""
    raw = yaml.safe_load((REPO / "params.yaml").read_text())
    raw["tune"] |= tune
    return parse_params(raw, "params.yaml")


def write_params(root: Path, raw: dict[str, Any]) -> Path:
    path = root / "params.yaml"
    path.write_text(yaml.safe_dump(raw, sort_keys=False))
    return path


@pytest.fixture(scope="session", autouse=True)
def _temporary_files_in_basetemp(tmp_path_factory: pytest.TempPathFactory) -> Iterator[Path]:
    """The temporary files of the tools the tests run (torchrun's rendezvous, `mlflow models
    serve`'s model copy, Prefect's runner storage), in this process and every subprocess, go
    under pytest's base folder, which pytest prunes (the last 3 runs stay); in the system's
    folder they would pile up, since a killed tool never removes its own."""
    folder = tmp_path_factory.getbasetemp() / "tmp"
    folder.mkdir(exist_ok=True)
    with pytest.MonkeyPatch.context() as mp:
        mp.setenv("TMPDIR", str(folder))
        mp.setattr(tempfile, "tempdir", str(folder))
        yield folder


@pytest.fixture(autouse=True)
def _no_ambient_tracking(monkeypatch: pytest.MonkeyPatch) -> None:
    """Tests use the tracking URI of their own params, never the developer's environment."""
    monkeypatch.delenv("MLFLOW_TRACKING_URI", raising=False)
    monkeypatch.delenv("MLFLOW_RUN_ID", raising=False)
    monkeypatch.delenv("MLFLOW_EXPERIMENT_ID", raising=False)  # set by mlflow.set_experiment


@pytest.fixture
def project(tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> tuple[Params, ProjectPaths]:
    """An empty project directory (the cwd) with tiny params."""
    monkeypatch.chdir(tmp_path)
    path = write_params(tmp_path, tiny_params_dict(tmp_path))
    return load_params(path), ProjectPaths(tmp_path)


@dataclass
class PipelineRun:
    params: Params
    paths: ProjectPaths
    run_info: dict[str, Any]
    metrics: dict[str, Any]
    decision: dict[str, Any]

    @property
    def tracking_uri(self) -> str:
        return self.params.tracking.uri


@pytest.fixture(scope="session")
def pipeline_run(tmp_path_factory: pytest.TempPathFactory) -> Iterator[PipelineRun]:
    """prepare -> split -> train -> evaluate -> register once, for every test that reads results."""
    from pipelines import stages

    root = tmp_path_factory.mktemp("pipeline")
    with pytest.MonkeyPatch.context() as mp:
        mp.chdir(root)  # MLflow puts artifacts under ./mlruns of the cwd
        mp.delenv("MLFLOW_TRACKING_URI", raising=False)
        params = load_params(write_params(root, tiny_params_dict(root)))
        paths = ProjectPaths(root)
        stages.prepare(params, paths)
        stages.split(params, paths)
        run_info = stages.train(params, paths)
        metrics = stages.evaluate(params, paths)
        decision = stages.register(params, paths)
        yield PipelineRun(params, paths, run_info, metrics, decision)
