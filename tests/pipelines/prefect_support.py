"""Reading a flow run back through the Prefect API: its logs, task runs and artifacts."""

from __future__ import annotations

import time
from typing import Any
from uuid import UUID

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
