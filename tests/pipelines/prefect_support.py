"""A real Prefect server and workers for tests, and reading a flow run back through the
Prefect API: its logs, task runs and artifacts."""

from __future__ import annotations

import os
import signal
import subprocess
import sys
import time
import urllib.request
from collections.abc import Iterator
from contextlib import contextmanager, suppress
from pathlib import Path
from typing import Any
from uuid import UUID

from tests.helpers import command_env
from tests.pg_support import free_port

PREFECT = str(Path(sys.executable).parent / "prefect")

PAGE = 200  # the API's largest page


def flow_run_logs(flow_run_id: UUID, *expected: str, timeout: float = 30) -> str:
    """The flow run's log messages (its tasks' included), oldest first. Logs reach the API in
    batches, so it waits up to ``timeout`` seconds for every ``expected`` text to show."""
    from prefect.client.orchestration import get_client
    from prefect.client.schemas.filters import LogFilter, LogFilterFlowRunId

    log_filter = LogFilter(flow_run_id=LogFilterFlowRunId(any_=[flow_run_id]))
    deadline = time.monotonic() + timeout
    while True:
        messages: list[str] = []
        with get_client(sync_client=True) as client:
            while True:
                page = client.read_logs(log_filter=log_filter, limit=PAGE, offset=len(messages))
                messages += [log.message for log in page]
                if len(page) < PAGE:
                    break
        text = "\n".join(messages)
        if all(e in text for e in expected) or time.monotonic() > deadline:
            return text
        time.sleep(1)


def task_run_names(flow_run_id: UUID, count: int, timeout: float = 30) -> list[str]:
    """Names of the flow run's task runs in the order they started (the API records them from
    events, so it waits until ``count`` are there)."""
    from prefect.client.orchestration import get_client
    from prefect.client.schemas.filters import FlowRunFilter, FlowRunFilterId
    from prefect.client.schemas.sorting import TaskRunSort

    flow_runs = FlowRunFilter(id=FlowRunFilterId(any_=[flow_run_id]))
    deadline = time.monotonic() + timeout
    while True:
        with get_client(sync_client=True) as client:
            runs = client.read_task_runs(
                flow_run_filter=flow_runs, sort=TaskRunSort.EXPECTED_START_TIME_ASC
            )
        if len(runs) >= count or time.monotonic() > deadline:
            return [run.name for run in runs]
        time.sleep(1)


def flow_run_artifacts(flow_run_id: UUID) -> dict[str, Any]:
    """The flow run's keyed artifacts: key -> artifact (``.type``, ``.data``)."""
    from prefect.client.orchestration import get_client
    from prefect.client.schemas.filters import ArtifactFilter, ArtifactFilterFlowRunId

    with get_client(sync_client=True) as client:
        artifacts = client.read_artifacts(
            artifact_filter=ArtifactFilter(flow_run_id=ArtifactFilterFlowRunId(any_=[flow_run_id]))
        )
    return {a.key: a for a in artifacts if a.key}


def read_flow_run(flow_run_id: UUID) -> Any:
    from prefect.client.orchestration import get_client

    with get_client(sync_client=True) as client:
        return client.read_flow_run(flow_run_id)


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
def background(
    cmd: list[str], env: dict[str, str], log: Path, cwd: Path | None = None
) -> Iterator[subprocess.Popen[bytes]]:
    """A process in its own group, its output in ``log``; stopped when the block ends."""
    log.parent.mkdir(parents=True, exist_ok=True)
    with log.open("wb") as out:
        proc = subprocess.Popen(
            cmd, cwd=cwd or log.parent, env=env, stdout=out, stderr=subprocess.STDOUT,
            start_new_session=True,
        )  # fmt: skip
    try:
        yield proc
    finally:
        stop(proc)


def prefect_env(home: Path) -> dict[str, str]:
    """The project's console scripts on PATH; a Prefect home and API of this test only."""
    env = {k: v for k, v in command_env().items() if not k.startswith("PREFECT_")}
    return env | {
        "PREFECT_HOME": str(home),
        "PREFECT_API_URL": f"http://127.0.0.1:{free_port()}/api",
        "PREFECT_SERVER_ANALYTICS_ENABLED": "false",
        "PREFECT_WORKER_QUERY_SECONDS": "2",  # pick the run up soon after it is created
    }


@contextmanager
def prefect_server(env: dict[str, str], logs: Path) -> Iterator[subprocess.Popen[bytes]]:
    """``prefect server start`` on the port of ``env``'s API URL; yields once ``/health``
    answers, stops it at the end, failing or not."""
    api = env["PREFECT_API_URL"]
    port = api.split(":")[-1].removesuffix("/api")
    cmd = [PREFECT, "server", "start", "--host", "127.0.0.1", "--port", port]
    with background(cmd, env, logs / "prefect-server.log") as server:
        deadline = time.monotonic() + 120
        while True:
            if server.poll() is not None or time.monotonic() > deadline:
                raise RuntimeError(
                    f"prefect server did not start:\n{tail(logs / 'prefect-server.log')}"
                )
            with suppress(OSError), urllib.request.urlopen(f"{api}/health", timeout=2) as reply:
                if reply.status == 200:
                    break
            time.sleep(0.5)
        yield server
