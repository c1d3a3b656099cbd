"""Two `register` runs forced to interleave (both read the champion before either moves the
alias, the worse one moves it last) leave the better model as champion: with the SQLite
store's lock, and without a lock, as against a tracking server (issue 18, item 4)."""

from __future__ import annotations

import contextlib
import shutil
import threading
import time
import traceback
from pathlib import Path

import pytest
from mlflow import MlflowClient

from pipelines.files import ProjectPaths, read_json, write_json
from pipelines.stages import _register

pytestmark = pytest.mark.slow


def project_scoring(pipeline_run, dest: Path, score: float) -> ProjectPaths:
    """A copy of the trained project whose evaluation scored ``score``."""
    src = pipeline_run.paths
    paths = ProjectPaths(dest)
    shutil.copytree(src.models_dir, paths.models_dir)
    metrics = read_json(src.metrics_file, "evaluate")
    metrics["summary"]["mean_score"] = score
    write_json(paths.metrics_file, metrics)
    return paths


@pytest.mark.parametrize("store_lock", [True, False], ids=["sqlite-lock", "no-lock"])
def test_interleaved_registers_leave_the_better_model_as_champion(
    pipeline_run, tmp_path, monkeypatch, store_lock
):
    params = pipeline_run.params
    name = f"race-{store_lock}"
    params = params.model_copy(
        update={"registry": params.registry.model_copy(update={"model_name": name})}
    )
    worse = project_scoring(pipeline_run, tmp_path / "worse", 0.990)
    better = project_scoring(pipeline_run, tmp_path / "better", 0.995)
    if not store_lock:  # a tracking server offers no lock: the re-check must do it
        monkeypatch.setattr(_register, "sqlite_lock", lambda uri: contextlib.nullcontext())

    read = _register.champion_score
    both_read = threading.Barrier(2, timeout=3)
    first_read = threading.local()

    def slow_read(client, model, alias):
        found = read(client, model, alias)
        if not getattr(first_read, "done", False):
            first_read.done = True
            with contextlib.suppress(threading.BrokenBarrierError):  # a lock serialises them
                both_read.wait()
            if threading.current_thread().name == "worse":
                time.sleep(1.0)  # the worse model moves the alias last
        return found

    monkeypatch.setattr(_register, "champion_score", slow_read)
    decisions: dict[str, dict] = {}
    errors: list[BaseException] = []

    def register(label: str, paths: ProjectPaths) -> None:
        try:
            decisions[label] = _register.register(params, paths)
        except BaseException as exc:  # surfaced below
            errors.append(exc)

    threads = [
        threading.Thread(target=register, args=(label, paths), name=label)
        for label, paths in (("worse", worse), ("better", better))
    ]
    for thread in threads:
        thread.start()
    for thread in threads:
        thread.join(timeout=120)
    assert not errors, ["".join(traceback.format_exception(e)) for e in errors]

    client = MlflowClient(params.tracking.uri)
    champion = client.get_model_version_by_alias(name, params.registry.alias)
    assert float(champion.tags["mean_test_score"]) == pytest.approx(0.995)
    assert decisions["better"]["promoted"] and not decisions["worse"]["promoted"]
    assert decisions["worse"]["champion_version"] == int(champion.version)
