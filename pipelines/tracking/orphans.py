"""Runs whose process died (SIGKILL, a lost machine) stay RUNNING in MLflow forever: every
run records the process that owns it, and the next run in the experiment closes the runs
of processes on this machine that no longer exist, as KILLED with the reason."""

from __future__ import annotations

import os
import socket

import mlflow
from mlflow.entities import RunStatus

HOST_TAG, PID_TAG, REASON_TAG = "mtlflow.host", "mtlflow.pid", "mtlflow.end_reason"


def owner_tags() -> dict[str, str]:
    """Tags naming the process that owns a run (set on every run mtlflow starts)."""
    return {HOST_TAG: socket.gethostname(), PID_TAG: str(os.getpid())}


def _alive(pid: int) -> bool:
    try:
        os.kill(pid, 0)
    except ProcessLookupError:
        return False
    except PermissionError:  # another user's process: it exists
        return True
    return True


def close_orphaned_runs(client: mlflow.MlflowClient, experiment_id: str) -> list[str]:
    """Mark KILLED the RUNNING runs of ``experiment_id`` owned by a process of this machine
    that has ended; returns their ids. Runs of other machines (or without owner tags) are
    left alone: nothing here can tell whether their process is alive."""
    host = socket.gethostname()
    closed = []
    running = client.search_runs(
        [experiment_id],
        filter_string=f"attributes.status = 'RUNNING' and tags.`{HOST_TAG}` = '{host}'",
        max_results=1000,
    )
    for run in running:
        pid = run.data.tags.get(PID_TAG, "")
        if not pid.isdigit() or int(pid) == os.getpid() or _alive(int(pid)):
            continue
        client.set_tag(
            run.info.run_id,
            REASON_TAG,
            f"process {pid} on {host} ended without closing the run (killed, or its machine "
            "stopped); closed by the next run",
        )
        client.set_terminated(run.info.run_id, RunStatus.to_string(RunStatus.KILLED))
        closed.append(run.info.run_id)
    return closed
