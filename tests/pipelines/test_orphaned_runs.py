"""A run whose process was SIGKILLed stays RUNNING in MLflow; the next run of the project
marks it KILLED with the reason, and leaves live runs and other machines' runs alone
(issue 18, item 10)."""

from __future__ import annotations

import signal
import subprocess
import sys

import mlflow
import pytest
from mlflow import MlflowClient

from pipelines import tracking
from pipelines.tracking.orphans import HOST_TAG, PID_TAG, REASON_TAG

OPEN_A_RUN_AND_HANG = """
import sys, time, mlflow
from pipelines import tracking
mlflow.set_tracking_uri(sys.argv[1])
exp = mlflow.set_experiment("orphans")
run = mlflow.start_run(experiment_id=exp.experiment_id, run_name="doomed")
mlflow.set_tags(tracking.owner_tags())
print(run.info.run_id, flush=True)
time.sleep(600)
"""


def test_a_killed_process_run_is_closed_by_the_next_one(tmp_path) -> None:
    uri = f"sqlite:///{tmp_path / 'mlflow.db'}"
    doomed = subprocess.Popen(
        [sys.executable, "-c", OPEN_A_RUN_AND_HANG, uri], stdout=subprocess.PIPE, text=True
    )
    killed_id = doomed.stdout.readline().strip()  # type: ignore[union-attr]
    alive = subprocess.Popen([sys.executable, "-c", "import time; time.sleep(600)"])
    try:
        doomed.send_signal(signal.SIGKILL)
        doomed.wait(timeout=30)
        mlflow.set_tracking_uri(uri)
        client = MlflowClient(uri)
        experiment = client.get_experiment_by_name("orphans").experiment_id
        # a run of a live process, and one of another machine: neither may be touched
        live = client.create_run(
            experiment, tags={HOST_TAG: tracking.owner_tags()[HOST_TAG], PID_TAG: str(alive.pid)}
        )
        remote = client.create_run(experiment, tags={HOST_TAG: "elsewhere", PID_TAG: "1"})
        assert client.get_run(killed_id).info.status == "RUNNING"

        closed = tracking.close_orphaned_runs(client, experiment)

        assert closed == [killed_id]
        run = client.get_run(killed_id)
        assert run.info.status == "KILLED"
        assert run.data.tags[REASON_TAG].startswith(f"process {doomed.pid} on ")
        assert client.get_run(live.info.run_id).info.status == "RUNNING"
        assert client.get_run(remote.info.run_id).info.status == "RUNNING"
    finally:
        alive.kill()
        doomed.kill()


@pytest.mark.slow
def test_a_stage_run_closes_orphans_and_records_its_owner(project, capsys) -> None:
    from pipelines import stages

    params, paths = project
    stages.prepare(params, paths)
    stages.split(params, paths)
    mlflow.set_tracking_uri(params.tracking.uri)
    experiment = mlflow.set_experiment(params.tracking.experiment).experiment_id
    client = MlflowClient(params.tracking.uri)
    ended = subprocess.Popen([sys.executable, "-c", "pass"])  # a pid that no longer runs
    ended.wait()
    orphan = client.create_run(experiment, tags={**tracking.owner_tags(), PID_TAG: str(ended.pid)})
    run_info = stages.train(params, paths)
    assert client.get_run(orphan.info.run_id).info.status == "KILLED"
    assert f"run {orphan.info.run_id} was left RUNNING" in capsys.readouterr().out
    owner = client.get_run(run_info["run_id"]).data.tags
    assert owner[HOST_TAG] == tracking.owner_tags()[HOST_TAG] and owner[PID_TAG].isdigit()
