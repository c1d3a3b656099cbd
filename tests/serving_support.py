"""A real `mlflow models serve` process for tests, started and stopped around a block."""

from __future__ import annotations

from collections.abc import Iterator
from contextlib import contextmanager
from pathlib import Path

import pytest
import requests

from pipelines.serving.process import ServedModel, ServerFailed, served_model


@contextmanager
def served_process(
    model_uri: str, tracking_uri: str, cwd: Path, env: dict[str, str] | None = None
) -> Iterator[ServedModel]:
    """Serve ``model_uri`` with one worker on a free loopback port; yields the process once
    ``/ping`` answers (a failed start fails the test), and kills its group afterwards."""
    try:
        with served_model(model_uri, tracking_uri, cwd, env=env, start_timeout=120) as served:
            yield served
    except ServerFailed as exc:
        pytest.fail(str(exc))


@contextmanager
def model_server(model_uri: str, tracking_uri: str, cwd: Path) -> Iterator[str]:
    """``served_process``, yielding its URL."""
    with served_process(model_uri, tracking_uri, cwd) as served:
        yield served.url


def invoke(url: str, rows: list[dict]) -> requests.Response:
    return requests.post(f"{url}/invocations", json={"dataframe_records": rows}, timeout=60)
