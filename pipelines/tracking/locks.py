"""A SQLite tracking store is locked while another process writes to it (a long `dvc repro`
next to `mlflow ui`, a tuning worker): SQLite waits 5 s, then fails with "database is
locked". Calls that must not fail for that retry until ``LOCK_WAIT_S``, then stop with one
clear line."""

from __future__ import annotations

import os
import time
from collections.abc import Callable
from typing import TypeVar

from mlflow.exceptions import MlflowException
from sqlalchemy.exc import OperationalError

from pipelines.errors import MtlflowError

T = TypeVar("T")
LOCK_WAIT_S = 60.0  # MTLFLOW_LOCK_WAIT_S overrides it


def is_locked(exc: BaseException) -> bool:
    return "database is locked" in str(exc)


def lock_wait_s() -> float:
    return float(os.environ.get("MTLFLOW_LOCK_WAIT_S", LOCK_WAIT_S))


def retry_locked(call: Callable[[], T], what: str, wait_s: float | None = None) -> T:
    """``call()``, retried with backoff while the store is locked, for up to ``wait_s``
    (``LOCK_WAIT_S``) seconds; then an ``MtlflowError`` saying what could not be done."""
    budget = lock_wait_s() if wait_s is None else wait_s
    deadline = time.monotonic() + budget
    delay = 0.25
    while True:
        try:
            return call()
        except (MlflowException, OperationalError) as exc:
            if not is_locked(exc):
                raise
            if time.monotonic() + delay > deadline:
                raise MtlflowError(
                    f"{what}: the MLflow database stayed locked by another process for "
                    f"{budget:.0f} s; close whatever holds it (a long write, an open "
                    "`sqlite3` shell) and run this again"
                ) from None
            print(f"mlflow: database locked by another process; {what} retries", flush=True)
            time.sleep(delay)
            delay = min(2 * delay, 5.0)
