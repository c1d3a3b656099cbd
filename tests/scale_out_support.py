"""A real MLflow tracking server for tests: ``mlflow server`` on a PostgreSQL backend store,
serving artifacts through its proxy from a local folder (standing in for S3)."""

from __future__ import annotations

import os
import signal
import subprocess
import sys
import time
from collections.abc import Iterator
from contextlib import contextmanager
from pathlib import Path

import requests

from tests.helpers import command_env
from tests.pg_support import free_port


@contextmanager
def tracking_server(backend_store: str, artifacts: Path) -> Iterator[str]:
    """``mlflow server`` on 127.0.0.1 (one worker); yields its URL once ``/health`` answers,
    and stops it at the end, failing or not."""
    port = free_port()
    log = artifacts.parent / f"mlflow-server-{port}.log"
    artifacts.mkdir(parents=True, exist_ok=True)
    with open(log, "w") as out:
        server = subprocess.Popen(
            [
                sys.executable, "-m", "mlflow", "server",
                "--host", "127.0.0.1", "--port", str(port), "--workers", "1",
                "--backend-store-uri", backend_store,
                "--artifacts-destination", str(artifacts),
            ],
            stdout=out,
            stderr=subprocess.STDOUT,
            env=command_env(),
            start_new_session=True,
        )  # fmt: skip
    url = f"http://127.0.0.1:{port}"
    try:
        deadline = time.monotonic() + 180
        while True:
            try:
                if requests.get(f"{url}/health", timeout=2).ok:
                    break
            except requests.ConnectionError:
                pass
            if server.poll() is not None or time.monotonic() > deadline:
                raise RuntimeError(f"mlflow server did not start:\n{log.read_text()[-3000:]}")
            time.sleep(0.5)
        yield url
    finally:  # the server and the workers it started
        os.killpg(server.pid, signal.SIGTERM)
        try:
            server.wait(timeout=30)
        except subprocess.TimeoutExpired:
            os.killpg(server.pid, signal.SIGKILL)
