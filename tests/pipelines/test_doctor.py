"""``mtlflow doctor`` says which of the services a project uses answers, with credentials
masked, and fails (exit 1) when one does not (issue 22)."""

from __future__ import annotations

import socket
import subprocess
import sys
import time
from pathlib import Path

import pytest

from pipelines.config import load_params
from pipelines.services import doctor
from tests.conftest import tiny_params_dict, write_params
from tests.helpers import run


def _closed_port() -> int:
    with socket.socket() as sock:
        sock.bind(("127.0.0.1", 0))
        return sock.getsockname()[1]


@pytest.fixture
def params(tmp_path: Path):
    return load_params(write_params(tmp_path, tiny_params_dict(tmp_path)))


def test_a_local_project_answers_and_says_what_is_not_configured(tmp_path, params, monkeypatch):
    monkeypatch.delenv("PREFECT_API_URL", raising=False)
    checks = {c.name: c for c in doctor.diagnose(params, tmp_path, params.tracking.uri)}
    assert (
        checks["tracking"].status == "ok"
        and "created at the first run" in checks["tracking"].detail
    )
    assert checks["study"].status == "ok"
    assert checks["dvc remote"].status == "info"
    assert checks["device"].status == "ok"


def test_an_unreachable_tracking_server_fails_with_its_credentials_masked() -> None:
    check = doctor.check_tracking(f"http://bob:s3cret@127.0.0.1:{_closed_port()}")
    assert check.status == "FAIL"
    line = check.line()
    assert "does not answer" in line and "bob:***@127.0.0.1" in line and "s3cret" not in line


def test_a_corrupt_sqlite_store_fails(tmp_path: Path) -> None:
    db = tmp_path / "mlflow.db"
    db.write_bytes(b"this is not a database" * 100)
    check = doctor.check_tracking(f"sqlite:///{db}")
    assert check.status == "FAIL" and "not a readable SQLite database" in check.detail


def test_a_study_storage_that_does_not_answer_fails_masked(tmp_path: Path) -> None:
    raw = tiny_params_dict(tmp_path)
    raw["tune"]["storage"] = f"postgresql://bob:s3cret@127.0.0.1:{_closed_port()}/optuna"
    check = doctor.check_study(load_params(write_params(tmp_path, raw)))
    assert check.status == "FAIL"
    assert "tune.storage postgresql://bob:***@" in check.line() and "s3cret" not in check.line()


def test_a_prefect_api_that_does_not_answer_fails(monkeypatch) -> None:
    from prefect.settings import PREFECT_API_URL, temporary_settings

    with temporary_settings({PREFECT_API_URL: f"http://127.0.0.1:{_closed_port()}/api"}):
        check = doctor.check_prefect()
    assert check.status == "FAIL" and "PREFECT_API_URL" in check.detail


def test_a_missing_dvc_remote_folder_fails_and_an_existing_one_answers(tmp_path: Path) -> None:
    for cmd in (["git", "init", "-q"], ["dvc", "init", "-q"]):
        assert run(cmd, tmp_path).returncode == 0
    store = tmp_path.parent / f"{tmp_path.name}-remote"
    assert run(["dvc", "remote", "add", "-d", "team", str(store)], tmp_path).returncode == 0
    missing = doctor.check_dvc_remote(tmp_path)
    assert missing.status == "FAIL" and "'team'" in missing.detail
    store.mkdir()
    assert doctor.check_dvc_remote(tmp_path).status == "ok"


def test_the_command_exits_1_naming_what_does_not_answer(tmp_path: Path) -> None:
    write_params(tmp_path, tiny_params_dict(tmp_path))
    uri = f"http://127.0.0.1:{_closed_port()}"
    result = run(["mtlflow", "doctor", "--set", f"tracking.uri={uri}"], tmp_path)
    assert result.returncode == 1
    assert f"FAIL  tracking    {uri}" in result.stdout
    assert "doctor: not reachable: tracking" in result.stderr
    assert "Traceback" not in result.stdout + result.stderr


@pytest.mark.slow
def test_a_real_tracking_server_answers(tmp_path: Path) -> None:
    port = _closed_port()
    server = subprocess.Popen(
        [
            sys.executable, "-m", "mlflow", "server", "--host", "127.0.0.1", "--port", str(port),
            "--backend-store-uri", f"sqlite:///{tmp_path / 'server.db'}",
            "--artifacts-destination", str(tmp_path / "artifacts"), "--workers", "1",
        ],
        stdout=subprocess.DEVNULL,
        stderr=subprocess.DEVNULL,
    )  # fmt: skip
    try:
        deadline = time.monotonic() + 120
        check = doctor.check_tracking(f"http://127.0.0.1:{port}")
        while check.status != "ok" and time.monotonic() < deadline:
            time.sleep(1)
            check = doctor.check_tracking(f"http://127.0.0.1:{port}")
        assert check.status == "ok", check.detail
        assert "MLflow server 3." in check.detail
    finally:
        server.terminate()
        server.wait(timeout=30)
