"""Two `register` runs forced to interleave (both read the champion before either moves the
alias, the worse one moves it last) leave the better model as champion: with the SQLite
store's lock, and without a lock, as against a tracking server (issue 18, item 4)."""

from __future__ import annotations

import contextlib
import shutil
import subprocess
import sys
import threading
import time
import traceback
from pathlib import Path

import pytest
import yaml
from mlflow import MlflowClient

from pipelines.files import ProjectPaths, read_json, write_json
from pipelines.stages import _register
from tests.helpers import run

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
    assert decisions["better"]["promoted"]
    if decisions["worse"]["version"] > decisions["better"]["version"]:  # registered after it
        assert not decisions["worse"]["promoted"]
        assert decisions["worse"]["champion_version"] == int(champion.version)
    # (a lock may let the worse one finish first: champion then, replaced by the better one)


HOLD_THE_DATABASE = """
import sqlite3, sys, time
db = sqlite3.connect(sys.argv[1], isolation_level=None)
db.execute("BEGIN EXCLUSIVE")
print("locked", flush=True)
time.sleep(float(sys.argv[2]))
db.execute("ROLLBACK")
"""


def hold_database(pipeline_run, seconds: float) -> subprocess.Popen:
    db = pipeline_run.params.tracking.uri.removeprefix("sqlite:///")
    holder = subprocess.Popen(
        [sys.executable, "-c", HOLD_THE_DATABASE, db, str(seconds)],
        stdout=subprocess.PIPE,
        text=True,
    )
    assert holder.stdout.readline().strip() == "locked"  # type: ignore[union-attr]
    return holder


def cli_project(pipeline_run, dest: Path) -> Path:
    """A project folder whose `mtlflow register` registers the trained model under a name
    of its own (the session's registry stays as other tests expect it)."""
    paths = project_scoring(pipeline_run, dest, 0.5)
    raw = yaml.safe_load((pipeline_run.paths.root / "params.yaml").read_text())
    raw["register"]["model_name"] = f"locked-{dest.name}"
    (dest / "params.yaml").write_text(yaml.safe_dump(raw, sort_keys=False))
    return paths.root


def test_register_waits_out_a_locked_database(pipeline_run, tmp_path):
    """SQLite gives up after 5 s; register retries, so a lock of 30 s costs time, not the run."""
    root = cli_project(pipeline_run, tmp_path / "waits")
    holder = hold_database(pipeline_run, 30)  # past the CLI start-up (slow on busy cores)
    try:
        result = run(["mtlflow", "register"], root)
    finally:
        holder.wait(timeout=30)
    assert result.returncode == 0, result.stdout[-2000:] + result.stderr[-2000:]
    assert "database locked by another process" in result.stdout
    assert read_json(root / "reports" / "registry.json", "register")["promoted"]


def test_register_on_a_database_locked_too_long_stops_with_one_clear_line(pipeline_run, tmp_path):
    root = cli_project(pipeline_run, tmp_path / "gives-up")
    holder = hold_database(pipeline_run, 20)
    try:
        result = run(["mtlflow", "register"], root, MTLFLOW_LOCK_WAIT_S="2")
    finally:
        holder.kill()
        holder.wait(timeout=30)
    assert result.returncode == 2
    assert (
        result.stderr.startswith("error: ")
        and "stayed locked by another process for 2 s" in result.stderr
    )
    assert "Traceback" not in result.stdout + result.stderr
    assert not (root / "reports" / "registry.json").exists()
