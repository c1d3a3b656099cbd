"""The deployed pipeline end to end: a real Prefect server on a free loopback port,
`mtlflow deploy`, a process worker and `prefect deployment run ... --watch`, in a real git +
DVC project with tiny params. Every process the test starts is stopped at the end."""

from __future__ import annotations

import os
import re
import shutil
import signal
import socket
import subprocess
import sys
import time
import urllib.request
from collections.abc import Iterator
from contextlib import contextmanager, suppress
from pathlib import Path
from uuid import UUID

import mlflow
import pytest

from tests.conftest import REPO
from tests.helpers import command_env, copy_project
from tests.pipelines.prefect_support import flow_run_artifacts, flow_run_logs, read_flow_run

pytestmark = pytest.mark.slow

PREFECT = str(Path(sys.executable).parent / "prefect")
OVERRIDES = '{"tune.enabled": false, "train.epochs": 1}'


def free_port() -> int:
    with socket.socket() as sock:
        sock.bind(("127.0.0.1", 0))
        return sock.getsockname()[1]


def tail(path: Path, chars: int = 3000) -> str:
    return path.read_text(errors="replace")[-chars:] if path.is_file() else ""


def stop(proc: subprocess.Popen[bytes]) -> None:
    """SIGTERM the process group, SIGKILL what is left of it after 20 s."""
    with suppress(ProcessLookupError):
        os.killpg(proc.pid, signal.SIGTERM)
    with suppress(subprocess.TimeoutExpired):
        proc.wait(timeout=20)
    with suppress(ProcessLookupError):  # children that outlived the leader (a flow run)
        os.killpg(proc.pid, signal.SIGKILL)
    proc.wait(timeout=10)


@contextmanager
def background(cmd: list[str], env: dict[str, str], log: Path) -> Iterator[subprocess.Popen]:
    """A process in its own group, its output in ``log``; stopped when the block ends."""
    log.parent.mkdir(parents=True, exist_ok=True)
    with log.open("wb") as out:
        proc = subprocess.Popen(
            cmd, cwd=log.parent, env=env, stdout=out, stderr=subprocess.STDOUT,
            start_new_session=True,
        )  # fmt: skip
    try:
        yield proc
    finally:
        stop(proc)


def wait_healthy(api: str, server: subprocess.Popen, log: Path, timeout: float = 120) -> None:
    deadline = time.monotonic() + timeout
    while time.monotonic() < deadline:
        assert server.poll() is None, f"prefect server exited:\n{tail(log)}"
        with suppress(OSError), urllib.request.urlopen(f"{api}/health", timeout=2) as reply:
            if reply.status == 200:
                return
        time.sleep(0.5)
    pytest.fail(f"prefect server not healthy after {timeout} s:\n{tail(log)}")


@pytest.fixture
def prefect_env(tmp_path: Path) -> dict[str, str]:
    """The project's console scripts on PATH; a Prefect home and API of this test only."""
    env = {k: v for k, v in command_env().items() if not k.startswith("PREFECT_")}
    return env | {
        "PREFECT_HOME": str(tmp_path / "prefect-home"),
        "PREFECT_API_URL": f"http://127.0.0.1:{free_port()}/api",
        "PREFECT_SERVER_ANALYTICS_ENABLED": "false",
        "PREFECT_WORKER_QUERY_SECONDS": "2",  # pick the run up soon after it is created
    }


def test_deployment_run_drives_the_pipeline_to_a_registered_model(tmp_path, prefect_env):
    project = copy_project(tmp_path / "project")
    for name in ("prefect.yaml", "prefect.toml"):
        shutil.copy2(REPO / name, project / name)
    api = prefect_env["PREFECT_API_URL"]
    port = api.split(":")[-1].removesuffix("/api")
    logs = tmp_path / "logs"

    server_cmd = [PREFECT, "server", "start", "--host", "127.0.0.1", "--port", port]
    with background(server_cmd, prefect_env, logs / "server.log") as server:
        wait_healthy(api, server, logs / "server.log")
        deployed = subprocess.run(
            ["mtlflow", "deploy"], cwd=project, env=prefect_env,
            capture_output=True, text=True, timeout=300,
        )  # fmt: skip
        assert deployed.returncode == 0, deployed.stdout[-3000:] + deployed.stderr[-3000:]
        assert "work pool 'mtlflow-local' (process) created" in deployed.stdout
        assert "prefect worker start --pool mtlflow-local" in deployed.stdout

        worker_cmd = [PREFECT, "worker", "start", "--pool", "mtlflow-local"]
        with background(worker_cmd, prefect_env, logs / "worker.log") as worker:
            triggered = subprocess.run(
                [PREFECT, "deployment", "run", "mtl-pipeline/default",
                 "--param", f"overrides={OVERRIDES}", "--watch", "--watch-timeout", "480"],
                cwd=tmp_path, env=prefect_env, capture_output=True, text=True, timeout=540,
            )  # fmt: skip
        assert triggered.returncode == 0, triggered.stdout[-3000:] + tail(logs / "worker.log")
        assert "Flow run finished successfully in 'Completed'" in triggered.stdout
        found = re.search(r"UUID: ([0-9a-f-]{36})", triggered.stdout)
        assert found, triggered.stdout
        flow_run_id = UUID(found.group(1))

        from prefect.client.orchestration import get_client
        from prefect.settings import PREFECT_API_URL, temporary_settings

        with temporary_settings(updates={PREFECT_API_URL: api}):
            flow_run = read_flow_run(flow_run_id)
            with get_client(sync_client=True) as client:
                for name in ("mtl-pipeline/default", "tune/default", "train/default"):
                    assert client.read_deployment_by_name(name).work_pool_name == "mtlflow-local"
            artifacts = flow_run_artifacts(flow_run_id)
            logs_text = flow_run_logs(flow_run_id, "epoch   1", "is now @champion")
    assert server.poll() is not None and worker.poll() is not None  # both stopped

    assert flow_run.state.is_completed()
    assert flow_run.parameters["overrides"] == {"tune.enabled": False, "train.epochs": 1}
    assert {"mtlflow-model-report", "mtlflow-test-metrics"} <= set(artifacts)
    assert "Running stage 'split'" in logs_text and "epoch   1" in logs_text
    assert "tune: skipped (tune.enabled is false)" in logs_text

    client = mlflow.MlflowClient(f"sqlite:///{project / 'mlflow.db'}")
    (version,) = client.search_model_versions("name = 'tiny-defects'")
    run = client.get_run(version.run_id)
    assert run.data.tags["prefect.flow_run.id"] == str(flow_run_id)
    assert run.data.tags["prefect.deployment"] == "mtl-pipeline/default"
    assert f"[version {version.version}]" in artifacts["mtlflow-model-report"].data
