"""A real `mlflow models serve` process, started and stopped around a block, and the memory
it holds: what the serving tests, the latency benchmark and the soak script share."""

from __future__ import annotations

import os
import signal
import socket
import subprocess
import sys
import tempfile
import time
from collections.abc import Iterator, Mapping
from contextlib import contextmanager
from dataclasses import dataclass
from pathlib import Path

import requests


class ServerFailed(RuntimeError):
    """`mlflow models serve` exited or did not answer /ping in time; says what it printed."""


def free_port() -> int:
    with socket.socket() as sock:
        sock.bind(("127.0.0.1", 0))
        return sock.getsockname()[1]


def process_tree(pid: int) -> dict[int, int]:
    """Resident bytes of a process and each of its descendants (uvicorn's workers) by pid,
    from /proc; empty once the process is gone."""
    children: dict[int, list[int]] = {}
    rss: dict[int, int] = {}
    page = os.sysconf("SC_PAGE_SIZE")
    for entry in os.listdir("/proc"):
        if not entry.isdigit():
            continue
        try:
            stat = Path(f"/proc/{entry}/stat").read_text()
            resident = int(Path(f"/proc/{entry}/statm").read_text().split()[1])
        except (OSError, IndexError, ValueError):
            continue  # gone meanwhile
        parent = int(stat.rsplit(")", 1)[1].split()[1])
        children.setdefault(parent, []).append(int(entry))
        rss[int(entry)] = resident * page
    tree, todo = {}, [pid]
    while todo:
        current = todo.pop()
        if current in rss:
            tree[current] = rss[current]
            todo += children.get(current, [])
    return tree


@dataclass
class ServedModel:
    url: str
    process: subprocess.Popen

    def alive(self) -> bool:
        return self.process.poll() is None

    def rss(self) -> int:
        """Resident bytes of the server and its workers together."""
        return sum(process_tree(self.process.pid).values())

    def pids(self) -> set[int]:
        """The server's processes: a worker that died and was replaced changes the set."""
        return set(process_tree(self.process.pid))


@contextmanager
def served_model(
    model_uri: str,
    tracking_uri: str,
    cwd: Path,
    workers: int = 1,
    env: Mapping[str, str] | None = None,
    start_timeout: float = 180,
) -> Iterator[ServedModel]:
    """Serve ``model_uri`` on a free loopback port (``--env-manager local``, ``workers``
    uvicorn workers, ``env`` added to this process's environment); yields once ``/ping``
    answers, and ends the whole process group afterwards."""
    port = free_port()
    venv_bin = Path(sys.executable).parent  # as in an activated venv: uvicorn is there
    full_env = {
        **os.environ,
        "PATH": f"{venv_bin}{os.pathsep}{os.environ.get('PATH', '')}",
        "MLFLOW_TRACKING_URI": tracking_uri,
        "MLFLOW_DISABLE_TELEMETRY": "true",
        **(env or {}),
    }
    cmd = [str(venv_bin / "mlflow"), "models", "serve", "-m", model_uri, "--env-manager", "local"]
    cmd += ["--host", "127.0.0.1", "--port", str(port), "--workers", str(workers)]
    with tempfile.TemporaryFile() as log:
        proc = subprocess.Popen(
            cmd, cwd=cwd, env=full_env, stdout=log, stderr=subprocess.STDOUT, start_new_session=True
        )
        url = f"http://127.0.0.1:{port}"
        try:
            _wait_for_ping(url, proc, log, start_timeout)
            yield ServedModel(url, proc)
        finally:
            if proc.poll() is None:
                os.killpg(proc.pid, signal.SIGTERM)
            try:
                proc.wait(timeout=30)
            except subprocess.TimeoutExpired:
                os.killpg(proc.pid, signal.SIGKILL)
                proc.wait()


def _wait_for_ping(url: str, proc: subprocess.Popen, log, timeout: float) -> None:
    deadline = time.monotonic() + timeout
    while time.monotonic() < deadline:
        if proc.poll() is not None:
            log.seek(0)
            printed = log.read().decode(errors="replace")[-3000:]
            raise ServerFailed(f"mlflow models serve exited ({proc.returncode}): {printed}")
        try:
            if requests.get(f"{url}/ping", timeout=2).status_code == 200:
                return
        except requests.ConnectionError:
            time.sleep(0.5)
    raise ServerFailed(f"mlflow models serve did not answer /ping within {timeout:.0f} s")
