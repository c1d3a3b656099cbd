"""``register``: add the trained model to the registry; move the alias only if it is better."""

from __future__ import annotations

from collections.abc import Callable
from typing import Any, TypeVar

import mlflow
from mlflow import MlflowClient
from mlflow.exceptions import MlflowException

from pipelines import tracking
from pipelines.config import Params
from pipelines.errors import MtlflowError
from pipelines.files import ProjectPaths, read_json, sqlite_lock, write_json
from pipelines.redaction import redact
from pipelines.services.summaries import NOTE_TAG, registry_line
from pipelines.tracking.locks import is_locked, retry_locked

SCORE_TAG = "mean_test_score"
T = TypeVar("T")


def champion_score(client: MlflowClient, name: str, alias: str) -> tuple[str | None, float | None]:
    """Version and mean test score of the model the alias points at, if any."""
    try:
        version = client.get_model_version_by_alias(name, alias)
    except MlflowException as exc:
        if is_locked(exc):  # not "no champion": the store is busy (retried by the caller)
            raise
        return None, None
    score = version.tags.get(SCORE_TAG)
    return version.version, (float(score) if score is not None else None)


def settle_champion(
    client: MlflowClient, name: str, alias: str, since: int, rounds: int = 5
) -> None:
    """Point ``alias`` at the best-scoring of its current version and every version
    registered after ``since`` (the champion this register compared with): registrations
    that ran at the same time (each tags its score before it decides) cannot leave the alias
    on the worse one, because each re-checks after it moves it. Ties keep the earlier."""
    for _ in range(rounds):
        current, current_score = champion_score(client, name, alias)
        candidates = (
            [(current_score, -int(current))] if current and current_score is not None else []
        )
        for found in client.search_model_versions(f"name='{name}'"):
            if int(found.version) > since and SCORE_TAG in found.tags:
                candidates.append((float(found.tags[SCORE_TAG]), -int(found.version)))
        if not candidates:
            return
        best = str(-max(candidates)[1])
        if best == current:
            return
        client.set_registered_model_alias(name, alias, best)


def check_trained_model_stored(
    client: MlflowClient, run_info: dict[str, Any], uri: str, paths: ProjectPaths
) -> None:
    """The store still holds the run and the model ``models/run.json`` names: a store
    replaced or emptied since training has neither (``MtlflowError`` saying so)."""
    model_uri = run_info["model_uri"]
    try:
        client.get_run(run_info["run_id"])
        if model_uri.startswith("models:/m-"):  # a logged model's id (MLflow 3)
            client.get_logged_model(model_uri.removeprefix("models:/"))
    except MlflowException as exc:
        if exc.error_code != "RESOURCE_DOES_NOT_EXIST":
            raise  # a busy store (retried by the caller), or another failure
        raise MtlflowError(
            f"{redact(uri)}: the tracking store has no model {model_uri} (the model_uri of "
            f"{paths.run_info}): the store was replaced or emptied since training; run "
            "`mtlflow train` (or `dvc repro`)"
        ) from None


def register(params: Params, paths: ProjectPaths) -> dict[str, Any]:
    """Register the model in ``models/run.json``; record the decision in ``reports/``."""
    run_info = read_json(paths.run_info, "train", {"run_id": "string", "model_uri": "string"})
    metrics = read_json(paths.metrics_file, "evaluate", {"summary.mean_score": "number"})
    score = float(metrics["summary"]["mean_score"])
    name, alias = params.registry.model_name, params.registry.alias

    uri = tracking.configure(params)
    client = MlflowClient()

    # compare-and-move is one step: under a lock for a SQLite store; for a tracking server
    # (no lock to take) ``settle_champion`` re-checks after moving, so the last writer
    # leaves the alias on the best of the concurrent registrations
    def retried(call: Callable[[], T]) -> T:  # each step alone, so none is done twice
        return retry_locked(call, f"register {name}")

    retried(lambda: check_trained_model_stored(client, run_info, uri, paths))
    with sqlite_lock(uri):
        previous_version, previous_score = retried(lambda: champion_score(client, name, alias))
        version = retried(lambda: mlflow.register_model(run_info["model_uri"], name))
        retried(
            lambda: client.set_model_version_tag(name, version.version, SCORE_TAG, f"{score:.6f}")
        )
        retried(
            lambda: client.set_model_version_tag(
                name, version.version, "run_id", run_info["run_id"]
            )
        )
        if previous_score is None or score > previous_score:
            retried(lambda: client.set_registered_model_alias(name, alias, version.version))
        retried(lambda: settle_champion(client, name, alias, since=int(previous_version or 0)))
        champion, champion_score_now = retried(lambda: champion_score(client, name, alias))
    promote = champion == version.version
    if promote:
        reason = (
            f"no '{alias}' yet"
            if previous_score is None
            else f"mean test score {score:.4f} > {previous_score:.4f} (version {previous_version})"
        )
        print(f"register: {name} version {version.version} is now @{alias}: {reason}")
    else:
        print(
            f"register: {name} version {version.version} registered; @{alias} is on version "
            f"{champion}: mean test score {score:.4f} <= {champion_score_now or float('nan'):.4f}"
        )
    decision = {
        "model_name": name,
        "version": int(version.version),
        "alias": alias,
        "promoted": promote,
        "score": score,
        "champion_version": int(champion),  # type: ignore[arg-type]
        "champion_score": champion_score_now,
        "previous_champion_version": int(previous_version) if previous_version else None,
        "previous_champion_score": previous_score,
        "run_id": run_info["run_id"],
    }
    write_json(paths.registry_file, decision)
    # the run's description ends with the decision (evaluate wrote the test table above it)
    note = retried(lambda: client.get_run(run_info["run_id"]).data.tags.get(NOTE_TAG, ""))
    link = f"#/models/{name}/versions/{version.version}"
    text = f"{note}\n## Registry\n\n{registry_line(decision, link)}\n"
    retried(lambda: client.set_tag(run_info["run_id"], NOTE_TAG, text))
    return decision
