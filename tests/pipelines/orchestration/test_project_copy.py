"""The deployment steps that choose a flow run's project copy, in real git + DVC repositories:
the build step pins commit and dvc.lock, the pull step checks a worker's clone against them
and pulls its data from a local DVC remote; the project lock serialises runs in one copy."""

from __future__ import annotations

import shutil
import threading
import time
from pathlib import Path

import pytest

from pipelines.errors import MtlflowError
from pipelines.orchestration.project_copy import (
    PROJECT_DIR_ENV,
    enter_project,
    pin_project,
    project_lock,
)
from tests.helpers import run

# two data stages like the project's, writing small files: what `dvc pull prepare split` gets
DVC_YAML = """\
stages:
  prepare:
    cmd: mkdir -p data/raw && echo rows > data/raw/manifest.csv
    outs: [data/raw]
  split:
    cmd: mkdir -p data/splits && cat data/raw/manifest.csv > data/splits/train.csv
    deps: [data/raw]
    outs: [data/splits]
"""


def sh(root: Path, *cmd: str) -> str:
    done = run(list(cmd), root)
    assert done.returncode == 0, done.stdout + done.stderr
    return done.stdout.strip()


def commit(root: Path, message: str) -> str:
    sh(root, "git", "add", "-A")
    sh(root, "git", "-c", "user.name=t", "-c", "user.email=t@t", "commit", "-qm", message)
    return sh(root, "git", "rev-parse", "HEAD")


@pytest.fixture(scope="module")
def pushed(tmp_path_factory: pytest.TempPathFactory) -> Path:
    """A project with its data reproduced, dvc.lock committed and pushed to a local remote."""
    base = tmp_path_factory.mktemp("pushed")
    root = base / "deployed"
    root.mkdir()
    (root / "dvc.yaml").write_text(DVC_YAML)
    (root / "params.yaml").write_text("seed: 0\n")
    sh(root, "git", "init", "-q")
    sh(root, "dvc", "init", "-q")
    sh(root, "dvc", "config", "core.analytics", "false")
    sh(root, "dvc", "remote", "add", "-d", "team", str(base / "dvc-remote"))
    sh(root, "dvc", "repro", "-q")
    commit(root, "data")
    sh(root, "dvc", "push", "-q")
    return root


@pytest.fixture
def deployed(pushed: Path, tmp_path: Path) -> Path:
    """This test's copy of ``pushed`` (the remote is shared, and only read)."""
    return Path(shutil.copytree(pushed, tmp_path / "deployed", symlinks=True))


def clone(deployed: Path, name: str) -> Path:
    target = deployed.parent / name
    sh(deployed.parent, "git", "clone", "-q", str(deployed), str(target))
    return target


def test_pin_records_commit_and_dvc_lock_and_names_what_is_not_committed(deployed, capsys):
    pinned = pin_project(str(deployed))
    assert pinned == {
        "directory": str(deployed.resolve()),
        "commit": sh(deployed, "git", "rev-parse", "HEAD"),
        "dvc_lock": sh(deployed, "git", "hash-object", "dvc.lock"),
    }
    assert "not committed" not in capsys.readouterr().out

    (deployed / "params.yaml").write_text("seed: 1\n")
    pin_project(str(deployed))
    out = capsys.readouterr().out
    assert "params.yaml not committed" in out and pinned["commit"][:12] in out


def test_pin_outside_git_records_no_commit(tmp_path):
    assert pin_project(str(tmp_path)) == {"directory": str(tmp_path), "commit": "", "dvc_lock": ""}


def test_without_a_project_dir_the_flow_runs_where_it_was_deployed(deployed, monkeypatch):
    monkeypatch.delenv(PROJECT_DIR_ENV, raising=False)
    monkeypatch.chdir(deployed.parent)
    pinned = pin_project(str(deployed))
    assert enter_project(**pinned) == {"directory": str(deployed.resolve())}


def test_a_clone_at_the_commit_pulls_the_locked_data(deployed, monkeypatch, capsys):
    pinned = pin_project(str(deployed))
    worker = clone(deployed, "worker")
    assert not (worker / "data/splits").exists()
    monkeypatch.setenv(PROJECT_DIR_ENV, str(worker))
    monkeypatch.chdir(deployed.parent)

    assert enter_project(**pinned) == {"directory": str(worker.resolve())}
    assert (worker / "data/splits/train.csv").read_text() == "rows\n"
    assert "dvc pull prepare split" in capsys.readouterr().out
    status = run(["dvc", "status"], worker)
    assert "up to date" in status.stdout, status.stdout + status.stderr


def test_a_clone_at_another_commit_is_refused_with_the_way_to_fix_it(deployed, monkeypatch):
    worker = clone(deployed, "worker")
    (deployed / "params.yaml").write_text("seed: 1\n")
    newer = commit(deployed, "newer")
    monkeypatch.setenv(PROJECT_DIR_ENV, str(worker))
    with pytest.raises(MtlflowError) as raised:
        enter_project(**pin_project(str(deployed)))
    message = str(raised.value)
    assert "\n" not in message and message.startswith(f"{PROJECT_DIR_ENV}={worker}")
    assert f"the deployment runs {newer[:12]}" in message and f"checkout {newer}" in message
    assert not (worker / "data/splits").exists()  # refused before pulling anything


def test_a_clone_with_changed_params_or_another_dvc_lock_is_refused(deployed, monkeypatch):
    pinned = pin_project(str(deployed))
    worker = clone(deployed, "worker")
    monkeypatch.setenv(PROJECT_DIR_ENV, str(worker))
    (worker / "params.yaml").write_text("seed: 2\n")
    with pytest.raises(MtlflowError, match=r"params\.yaml changed since commit"):
        enter_project(**pinned)

    sh(worker, "git", "checkout", "--", "params.yaml")
    with pytest.raises(MtlflowError, match=r"dvc\.lock differs from the one deployed"):
        enter_project(**(pinned | {"dvc_lock": "0" * 40}))


def test_no_remote_to_pull_from_is_one_clear_line(deployed, monkeypatch):
    pinned = pin_project(str(deployed))
    worker = clone(deployed, "worker")
    sh(worker, "dvc", "remote", "remove", "team")
    commit(worker, "no remote")  # the copy's own commit must still match: pin it again
    monkeypatch.setenv(PROJECT_DIR_ENV, str(worker))
    with pytest.raises(MtlflowError) as raised:
        enter_project(**(pinned | {"commit": sh(worker, "git", "rev-parse", "HEAD")}))
    message = str(raised.value)
    assert "\n" not in message and "`dvc pull prepare split` failed" in message
    assert "dvc remote add -d" in message


def test_a_project_dir_that_is_no_project_is_refused(tmp_path, monkeypatch):
    monkeypatch.setenv(PROJECT_DIR_ENV, str(tmp_path / "nowhere"))
    with pytest.raises(MtlflowError, match=rf"^{PROJECT_DIR_ENV}=.*nowhere: no dvc.yaml there"):
        enter_project(str(tmp_path))
    monkeypatch.setenv(PROJECT_DIR_ENV, ".")  # the flow run's own cwd is a temporary folder
    with pytest.raises(MtlflowError, match=rf"^{PROJECT_DIR_ENV}=\.: not an absolute path"):
        enter_project(str(tmp_path))


def test_a_second_flow_run_in_one_copy_waits_for_the_first(tmp_path):
    said: list[str] = []
    order: list[str] = []
    held = threading.Event()

    def first() -> None:
        with project_lock(tmp_path, said.append):
            held.set()
            time.sleep(0.5)
            order.append("first done")

    thread = threading.Thread(target=first)
    thread.start()
    held.wait(10)
    with project_lock(tmp_path, said.append):
        order.append("second in")
    thread.join()
    assert order == ["first done", "second in"]
    assert said == [
        f"{tmp_path}: another flow run is working in this project copy; waiting for it to end"
    ]
    with project_lock(tmp_path, said.append):  # released: no wait
        pass
    assert len(said) == 1
