"""MLflow side of a Prefect flow run: one MLflow run per flow run, as under ``mlflow run``.

The flow opens the run with tags naming the Prefect flow run and the split's ``dvc.lock``
hash. ``train`` logs into it and ``tune`` and ``baselines`` nest their runs under it (the
stages take its id as ``project_run``), so every MLflow run a flow run makes is this run or
one of its descendants; those get the same tags when the flow ends.
"""

from __future__ import annotations

import json
from collections.abc import Iterator, Mapping
from contextlib import contextmanager
from pathlib import Path
from typing import Any

from mlflow import MlflowClient
from mlflow.entities import Run
from mlflow.exceptions import MlflowException

from pipelines import tracking
from pipelines.config import Params


def experiment_id(client: MlflowClient, name: str) -> str:
    """The experiment's id, created if missing (without ``mlflow.set_experiment``, which
    exports ``MLFLOW_EXPERIMENT_ID`` to every later subprocess), tagged as model training."""
    found = client.get_experiment_by_name(name)
    if found is None:
        try:
            found_id = client.create_experiment(name)
        except MlflowException:  # created meanwhile by another process
            found = client.get_experiment_by_name(name)
            if found is None:
                raise
            found_id = found.experiment_id
    else:
        found_id = found.experiment_id
    tracking.mark_model_training(client, found_id)
    return found_id


def descendants(client: MlflowClient, run_id: str) -> list[str]:
    """Ids of the runs nested under ``run_id``, at any depth (tune -> its trials)."""
    experiment = client.get_run(run_id).info.experiment_id
    found: list[str] = []
    frontier = [run_id]
    while frontier:
        parent = frontier.pop()
        children = client.search_runs(
            [experiment], f"tags.mlflow.parentRunId = '{parent}'", max_results=10_000
        )
        for child in children:
            found.append(child.info.run_id)
            frontier.append(child.info.run_id)
    return found


def flow_run_tags(flow_name: str, params_file: str, overrides: Mapping[str, Any]) -> dict[str, str]:
    """Tags naming the Prefect flow run (and its deployment) and what it was asked to run."""
    from prefect.runtime import deployment, flow_run
    from prefect.utilities.urls import url_for

    tags = {
        "mtlflow.entry_point": "prefect",
        "mtlflow.flow": flow_name,
        "mtlflow.params_file": params_file,
        "prefect.flow_run.id": str(flow_run.id),
        "prefect.flow_run.name": str(flow_run.name),
    }
    if overrides:
        tags["mtlflow.overrides"] = json.dumps(dict(overrides))
    url = url_for("flow-run", obj_id=flow_run.id)
    if url:
        tags["prefect.flow_run.url"] = url
    if deployment.name:
        tags["prefect.deployment"] = f"{flow_name}/{deployment.name}"
    return tags


@contextmanager
def flow_run_in_mlflow(
    params: Params, root: Path, run_name: str, tags: Mapping[str, str]
) -> Iterator[Run]:
    """Create the flow run's MLflow run (RUNNING) and yield it; when the block ends, tag
    every run nested under it and mark it FINISHED, or FAILED if the block raised."""
    client = MlflowClient(tracking.configure(params))
    all_tags = dict(tags)
    commit = tracking.git_commit(root)
    if commit:
        all_tags["mlflow.source.git.commit"] = commit
    run = client.create_run(
        experiment_id(client, params.tracking.experiment), run_name=run_name, tags=all_tags
    )
    run_id = run.info.run_id
    status = "FAILED"
    try:
        yield run
        status = "FINISHED"
    finally:
        for child in descendants(client, run_id):
            for key, value in tags.items():
                client.set_tag(child, key, value)
        client.set_terminated(run_id, status)


def model_version_url(name: str, version: int | str, ui: str) -> str:
    """The model version's page in the MLflow UI at ``ui``."""
    return f"{ui.rstrip('/')}/#/models/{name}/versions/{version}"


def versions_from_run(client: MlflowClient, name: str, run_id: str) -> list[str]:
    """Versions of registered model ``name`` made from run ``run_id``."""
    found = client.search_model_versions(f"name = '{name}' and run_id = '{run_id}'")
    return sorted((v.version for v in found), key=int)
