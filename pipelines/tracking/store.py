"""The tracking store answers before a stage's work, or one line says why not: a scheme
MLflow has no store for (``foo://``), a tracking server that does not answer, a SQLite file
that is not a database. The message names where the URI came from (``tracking.uri`` or
``MLFLOW_TRACKING_URI``), with its credentials masked."""

from __future__ import annotations

import os
from urllib.parse import urlparse

import mlflow
from mlflow.exceptions import MlflowException
from sqlalchemy.exc import SQLAlchemyError

from pipelines.errors import ConfigError, MtlflowError
from pipelines.redaction import redact
from pipelines.services.doctor import check_tracking

# what the store's first use may raise for a store that is not usable (not for a bug here)
STORE_ERRORS = (MlflowException, SQLAlchemyError, OSError)


# URIs this process gave ``mlflow.set_tracking_uri``, which exports each as
# MLFLOW_TRACKING_URI (for subprocesses): that one is not the user's
_CONFIGURED: set[str] = set()


def uri_source() -> str:
    """Where the tracking URI comes from: ``MLFLOW_TRACKING_URI`` (the user's) wins over
    params."""
    env = os.environ.get("MLFLOW_TRACKING_URI")
    return "MLFLOW_TRACKING_URI" if env and env not in _CONFIGURED else "tracking.uri"


def set_tracking_uri(uri: str) -> None:
    """``mlflow.set_tracking_uri``, remembering that the variable it exports is its own."""
    _CONFIGURED.add(uri)
    mlflow.set_tracking_uri(uri)


def _scheme_problem(uri: str) -> str | None:
    """Why MLflow has no tracking store for ``uri``'s scheme (None: it has one). Asks MLflow's
    own registry of stores, which holds plugins' schemes too; it builds no store."""
    from mlflow.tracking._tracking_service.utils import _tracking_store_registry

    try:
        _tracking_store_registry.get_store_builder(uri)
    except MlflowException:
        scheme = urlparse(uri).scheme
        return (
            f"MLflow has no tracking store for the scheme '{scheme}://'; give "
            "sqlite:///<file>, a folder, or http(s)://<server>"
        )
    return None


def check_store_reachable(uri: str, key: str) -> None:
    """Before the store is used: a known scheme, and a tracking server that answers
    (``MtlflowError`` naming ``key``, where the URI came from). A SQLite file is checked
    when it is first opened."""
    problem = _scheme_problem(uri)
    if problem:
        raise ConfigError(f"{key} {redact(uri)!r}: {problem}")
    if urlparse(uri).scheme in ("http", "https"):
        check = check_tracking(uri)
        if check.status == "FAIL":
            raise MtlflowError(f"{key}: {redact(check.detail)}")


def unusable_store(uri: str, key: str, exc: BaseException) -> MtlflowError:
    """The error to raise when the store's first use failed: what ``mtlflow doctor`` finds
    wrong with it, else the failure's first line."""
    check = check_tracking(uri)
    if check.status == "FAIL":
        hint = (
            "; restore it from a backup, or move it aside to start a new store"
            if "not a readable SQLite database" in check.detail
            else ""
        )
        return MtlflowError(f"{key}: {redact(check.detail)}{hint}")
    first = (str(getattr(exc, "orig", None) or exc).strip().splitlines() or [""])[0]
    return MtlflowError(
        f"{key} {redact(uri)!r}: the tracking store cannot be used "
        f"({type(exc).__name__}: {redact(first)[:300]})"
    )
