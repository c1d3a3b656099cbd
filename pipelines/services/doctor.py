"""``mtlflow doctor``: before a long job, do the services this project is set to use answer?

One check per service, each a line: the MLflow tracking store (``tracking.uri`` or
``MLFLOW_TRACKING_URI``: a SQLite file, a folder, or a tracking server), the Optuna study
storage (``tune.storage``, when tuning is on), the Prefect API (``PREFECT_API_URL``, where set),
the DVC remote (the default one, where set) and the training device. A service that is not
configured is not an error on one machine (SQLite files, a temporary Prefect server, no
remote): it says so. Every URL is printed with its credentials masked.
"""

from __future__ import annotations

import json
import sqlite3
from collections.abc import Callable
from dataclasses import dataclass
from pathlib import Path
from typing import Literal

from pipelines.config import Params
from pipelines.errors import MtlflowError
from pipelines.redaction import redact

Status = Literal["ok", "info", "FAIL"]
TIMEOUT_S = 5.0


@dataclass(frozen=True)
class Check:
    name: str  # what was checked: tracking, study, prefect, dvc remote, device
    status: Status
    detail: str  # where, and what answered or why not

    def line(self) -> str:
        return f"{self.status:4s}  {self.name:10s}  {redact(self.detail)}"


def _get(url: str, headers: dict[str, str] | None = None) -> bytes:
    """GET ``url`` (credentials in it become basic auth, as MLflow's client sends them)."""
    import requests

    response = requests.get(url, timeout=TIMEOUT_S, headers=headers)
    response.raise_for_status()
    return response.content


def _tracking_headers() -> dict[str, str]:
    """The credentials MLflow's client would send (``MLFLOW_TRACKING_TOKEN``, or
    ``MLFLOW_TRACKING_USERNAME``/``PASSWORD``)."""
    import base64
    import os

    if token := os.environ.get("MLFLOW_TRACKING_TOKEN"):
        return {"Authorization": f"Bearer {token}"}
    user, password = (os.environ.get(f"MLFLOW_TRACKING_{k}") for k in ("USERNAME", "PASSWORD"))
    if user and password:
        return {
            "Authorization": "Basic " + base64.b64encode(f"{user}:{password}".encode()).decode()
        }
    return {}


def _why(exc: BaseException) -> str:
    """The error's first line, without the long chained reprs of urllib3 and SQLAlchemy."""
    text = str(getattr(exc, "orig", None) or exc).strip().splitlines()
    return f"{type(exc).__name__}: {text[0] if text else ''}"[:300]


def _writable_folder(path: Path) -> str | None:
    """None when files can be created in ``path`` (or its nearest existing parent)."""
    folder = path
    while not folder.exists():
        folder = folder.parent
    if not folder.is_dir():
        return f"{folder} is not a folder"
    probe = folder / ".mtlflow-doctor"
    try:
        probe.touch()
        probe.unlink()
    except OSError as exc:
        return f"{folder} is not writable ({exc.strerror})"
    return None


def _sqlite(url: str, what: str) -> Check:
    path = Path(url.removeprefix("sqlite:///"))
    if path.exists():
        try:
            with sqlite3.connect(f"file:{path}?mode=ro", uri=True, timeout=TIMEOUT_S) as db:
                db.execute("select count(*) from sqlite_master").fetchone()
        except sqlite3.Error as exc:
            return Check(what, "FAIL", f"{url}: not a readable SQLite database ({exc})")
        return Check(what, "ok", f"{url} (SQLite file on this machine)")
    problem = _writable_folder(path.parent)
    if problem:
        return Check(what, "FAIL", f"{url}: cannot be created: {problem}")
    return Check(what, "ok", f"{url} (created at the first run)")


def check_tracking(uri: str) -> Check:
    if uri.startswith("sqlite:///"):
        return _sqlite(uri, "tracking")
    if uri.startswith(("http://", "https://")):
        base = uri.rstrip("/")
        import requests

        headers = _tracking_headers()
        try:
            _get(f"{base}/health", headers)
            version = _get(f"{base}/version", headers).decode().strip()
            json.loads(_get(f"{base}/api/2.0/mlflow/experiments/search?max_results=1", headers))
        except (requests.RequestException, ValueError) as exc:
            return Check(
                "tracking", "FAIL", f"{uri}: the tracking server does not answer ({_why(exc)})"
            )
        return Check("tracking", "ok", f"{uri} (MLflow server {version})")
    path = Path(uri.removeprefix("file://"))
    problem = _writable_folder(path)
    if problem:
        return Check("tracking", "FAIL", f"{uri}: {problem}")
    return Check("tracking", "ok", f"{uri} (a folder on this machine)")


def check_study(params: Params) -> Check:
    url = params.tune.storage
    if not params.tune.enabled:
        return Check("study", "info", "tune.enabled is false: no study storage needed")
    if url.startswith("sqlite:///"):
        return _sqlite(url, "study")
    import sqlalchemy

    try:
        engine = sqlalchemy.create_engine(url, connect_args=_connect_timeout(url))
        with engine.connect() as connection:
            connection.execute(sqlalchemy.text("select 1"))
    except ModuleNotFoundError as exc:
        return Check(
            "study", "FAIL", f"tune.storage {url}: its database driver is not installed ({exc})"
        )
    except Exception as exc:  # the database's own errors: refused, auth, unknown host
        return Check("study", "FAIL", f"tune.storage {url}: {_why(exc)}")
    return Check("study", "ok", f"tune.storage {url} (answers)")


def _connect_timeout(url: str) -> dict[str, object]:
    """The drivers of PostgreSQL (psycopg) and MySQL take the same ``connect_timeout``."""
    if url.startswith(("postgresql", "postgres", "mysql", "mariadb")):
        return {"connect_timeout": int(TIMEOUT_S)}
    return {}


def check_prefect() -> Check:
    from prefect.settings import PREFECT_API_URL

    url = PREFECT_API_URL.value()
    if not url:
        return Check(
            "prefect",
            "info",
            "PREFECT_API_URL is not set: a flow run starts a temporary local server "
            '(deployments and workers need one: README "Prefect")',
        )
    import requests

    try:
        _get(f"{url.rstrip('/')}/health")
    except requests.RequestException as exc:
        return Check("prefect", "FAIL", f"PREFECT_API_URL {url}: does not answer ({_why(exc)})")
    return Check("prefect", "ok", f"PREFECT_API_URL {url} (answers)")


def check_dvc_remote(root: Path) -> Check:
    from dvc.exceptions import DvcException
    from dvc.repo import Repo

    try:
        repo = Repo(str(root))
    except DvcException:
        return Check("dvc remote", "info", f"{root} is not a DVC repository")
    with repo:
        name = repo.config["core"].get("remote")
        if not name:
            return Check("dvc remote", "info", "no default remote: data stays on this machine")
        try:
            remote = repo.cloud.get_remote(name)
            reachable = remote.fs.exists(remote.path)
        except Exception as exc:  # the remote's own errors (auth, network, config)
            return Check("dvc remote", "FAIL", f"'{name}': {_why(exc)}")
    if not reachable:
        return Check("dvc remote", "FAIL", f"'{name}' ({remote.path}) does not exist")
    return Check("dvc remote", "ok", f"'{name}' ({remote.path})")


def check_device(params: Params) -> Check:
    from pipelines.services.distributed import check_device as device_problem

    try:
        device_problem(params)
    except MtlflowError as exc:
        return Check("device", "FAIL", str(exc))
    return Check("device", "ok", f"train.device {params.train.device}")


def diagnose(params: Params, root: Path, tracking_uri: str) -> list[Check]:
    checks: list[Callable[[], Check]] = [
        lambda: check_tracking(tracking_uri),
        lambda: check_study(params),
        check_prefect,
        lambda: check_dvc_remote(root),
        lambda: check_device(params),
    ]
    return [check() for check in checks]
