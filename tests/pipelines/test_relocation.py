"""A copied project must not write into the original's artifacts (issue 18, item 3): with
the SQLite store copied along, the copy refuses before writing anything, naming the remedy,
and works once it starts a fresh store."""

from __future__ import annotations

import shutil
import subprocess
import sys
from pathlib import Path

import mlflow
import pytest

from pipelines import tracking
from pipelines.config import load_params
from pipelines.errors import ConfigError
from tests.conftest import tiny_params_dict, write_params


def files_under(folder: Path) -> set[Path]:
    return {p.relative_to(folder) for p in folder.rglob("*") if p.is_file()}


def test_a_copied_project_refuses_to_write_into_the_original(tmp_path, monkeypatch) -> None:
    original = tmp_path / "proj"
    original.mkdir()
    raw = tiny_params_dict(original)
    raw["tracking"]["uri"] = "sqlite:///mlflow.db"  # relative: the project's own store
    write_params(original, raw)
    monkeypatch.chdir(original)
    params = load_params(original / "params.yaml")
    tracking.configure(params)
    with mlflow.start_run(
        experiment_id=mlflow.set_experiment(params.tracking.experiment).experiment_id
    ):
        mlflow.log_text("a result", "note.txt")
    before = files_under(original / "mlruns")

    copy = tmp_path / "proj2"
    shutil.copytree(original, copy)
    monkeypatch.chdir(copy)
    with pytest.raises(ConfigError) as err:
        tracking.configure(load_params(copy / "params.yaml"))
    message = str(err.value)
    assert f"keeps its artifacts in {original.resolve() / 'mlruns'}" in message
    assert f"outside this project ({copy.resolve()})" in message and "copied or moved" in message
    assert "remove mlflow.db and mlruns/ to start a fresh store" in message
    assert files_under(original / "mlruns") == before  # nothing reached the original

    (copy / "mlflow.db").unlink()
    shutil.rmtree(copy / "mlruns")
    # a fresh store in the copy is its own (a new process: MLflow caches a store per URI)
    fresh = subprocess.run(
        [sys.executable, "-c", FRESH], cwd=copy, capture_output=True, text=True, check=False
    )
    assert fresh.returncode == 0, fresh.stderr[-2000:]
    assert Path(fresh.stdout.strip().removeprefix("file://")).is_relative_to(copy)


FRESH = """
from pathlib import Path
import mlflow
from pipelines import tracking
from pipelines.config import load_params
params = load_params(Path("params.yaml"))
tracking.configure(params)
print(mlflow.set_experiment(params.tracking.experiment).artifact_location)
"""
