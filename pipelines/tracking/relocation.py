"""A project copied or moved with its SQLite store (``cp -a proj proj2``) still names the
original's folder as its experiments' artifact location: MLflow records it as an absolute
path when it creates the experiment. Runs in the copy would write their artifacts into the
original. Refused before anything is written, with what to do."""

from __future__ import annotations

from pathlib import Path
from urllib.parse import unquote, urlparse

import mlflow

from pipelines.errors import ConfigError


def local_artifact_path(location: str) -> Path | None:
    """The folder of a local artifact location (``file://...`` or a plain path); None for
    a remote one (``s3://``, ``mlflow-artifacts:``)."""
    parsed = urlparse(location)
    if parsed.scheme in ("", "file"):
        return Path(unquote(parsed.path))
    return None


def check_not_relocated(uri: str, experiment: str, project: Path | None = None) -> None:
    """For a ``sqlite:///`` store inside the project (the cwd: it was copied with it),
    refuse an experiment whose local artifacts live outside the project (``ConfigError``
    naming both and the remedy). A store outside the project may be shared on purpose."""
    if not uri.startswith("sqlite:///"):
        return
    project = (project or Path.cwd()).resolve()
    store = Path(uri.removeprefix("sqlite:///")).resolve()
    if not store.is_relative_to(project):
        return
    found = mlflow.MlflowClient(uri).get_experiment_by_name(experiment)
    if found is None:
        return
    artifacts = local_artifact_path(found.artifact_location)
    if artifacts is None or artifacts.resolve().is_relative_to(project):
        return
    raise ConfigError(
        f"tracking.uri {uri!r}: experiment '{experiment}' keeps its artifacts in "
        f"{artifacts}, outside this project ({project}) where its store is: it was copied or "
        "moved, and its runs would write into the original. In the copy, remove mlflow.db "
        "and mlruns/ to start a fresh store (or point tracking.uri at the original's)"
    )
