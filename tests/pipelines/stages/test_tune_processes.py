"""`mtlflow tune` as people run it: two processes on one study, and a kill mid-trial."""

from __future__ import annotations

import os
import signal
import subprocess
import time
from pathlib import Path

import mlflow
import optuna
import pytest
from optuna.trial import TrialState

from pipelines.config import load_params
from pipelines.services.best_params import study_name
from pipelines.services.study import FINISHED
from pipelines.services.study import default_values as _defaults
from tests.conftest import tiny_params_dict, write_params
from tests.helpers import command_env, run

pytestmark = pytest.mark.slow


@pytest.fixture
def project(tmp_path: Path) -> Path:
    """A tiny project with data and splits, tuned with the default study storage."""
    write_params(tmp_path, tiny_params_dict(tmp_path))
    for verb in ("prepare", "split"):
        result = run(["mtlflow", verb], tmp_path)
        assert result.returncode == 0, result.stderr
    return tmp_path


def start_tune(project: Path, *overrides: str) -> subprocess.Popen[str]:
    args = [a for o in overrides for a in ("--set", o)]
    return subprocess.Popen(
        ["mtlflow", "tune", *args],
        cwd=project,
        env=command_env(),
        stdout=subprocess.PIPE,
        stderr=subprocess.STDOUT,
        text=True,
        start_new_session=True,  # its own process group, so a kill reaches only it
    )


def test_two_processes_on_one_study_share_the_trials(project):
    common = ["tune.n_trials=6", "tune.epochs=2"]
    procs = [start_tune(project, *common, f"tune.seed={seed}") for seed in (0, 1)]
    outputs = [p.communicate(timeout=600)[0] for p in procs]
    for proc, out in zip(procs, outputs, strict=True):
        assert proc.returncode == 0, out[-3000:]

    params = load_params(project / "params.yaml", common)
    study = optuna.load_study(study_name=study_name(params), storage=params.tune.storage)
    numbers = [t.number for t in study.trials]
    shown = "\n".join([*(f"{t.number} {t.state.name} {t.params}" for t in study.trials), *outputs])
    assert numbers == list(range(len(numbers))), shown  # none lost, none duplicated
    assert all(t.state in FINISHED for t in study.trials), shown
    assert len(study.trials) == 6, shown  # exactly: count and create are one step
    defaults = _defaults(params)
    assert sum(defaults.items() <= t.params.items() for t in study.trials) == 1, shown

    # each process's trials are its own MLflow parent's children; together, all of them
    client = mlflow.MlflowClient(params.tracking.uri)
    experiment = client.get_experiment_by_name(params.tracking.experiment)
    parents = client.search_runs([experiment.experiment_id], "tags.`mtlflow.stage` = 'tune'")
    assert len(parents) == 2
    per_process = []
    for parent in parents:
        children = client.search_runs(
            [experiment.experiment_id], f"tags.mlflow.parentRunId = '{parent.info.run_id}'"
        )
        per_process.append({int(c.data.tags["optuna.trial"]) for c in children})
    assert per_process[0].isdisjoint(per_process[1]), (per_process, shown)
    assert per_process[0] | per_process[1] == set(numbers), (per_process, shown)
    workers = {t.user_attrs["worker"] for t in study.trials}
    assert workers <= {f"{os.uname().nodename}:{p.pid}" for p in procs}


def wait_for(condition, timeout: float, what: str) -> None:
    deadline = time.monotonic() + timeout
    while time.monotonic() < deadline:
        if condition():
            return
        time.sleep(0.2)
    raise AssertionError(f"timed out waiting for {what}")


def test_a_killed_tune_continues_and_marks_the_running_trial_failed(project):
    # no pruner: trial 1 must still be training when the process is killed
    settings = [
        "tune.n_trials=3",
        "tune.epochs=40",
        "tune.heartbeat_seconds=1",
        "tune.pruner.name=none",
    ]
    params = load_params(project / "params.yaml", settings)
    name = study_name(params)

    def trials() -> list[optuna.trial.FrozenTrial]:
        try:
            return optuna.load_study(study_name=name, storage=params.tune.storage).trials
        except KeyError:  # the study does not exist yet
            return []

    proc = start_tune(project, *settings)
    try:
        wait_for(
            lambda: (
                [t.state for t in trials()][:2] == [TrialState.COMPLETE, TrialState.RUNNING]
                and trials()[1].intermediate_values
            ),  # mid-training, not between trials
            timeout=300,
            what="trial 0 complete and trial 1 training",
        )
    finally:
        os.killpg(proc.pid, signal.SIGKILL)
        proc.communicate()
    before = trials()
    assert before[1].state is TrialState.RUNNING  # a dead process cannot mark it

    result = run(["mtlflow", "tune", *[a for s in settings for a in ("--set", s)]], project)
    assert result.returncode == 0, result.stdout[-3000:] + result.stderr[-3000:]
    after = trials()
    assert after[0].state is TrialState.COMPLETE and after[0].value == before[0].value
    assert after[1].state is TrialState.FAIL  # stale heartbeat: marked failed, not lost
    retried = [t for t in after if t.system_attrs.get("failed_trial") == 1]
    assert len(retried) == 1 and retried[0].params == after[1].params  # run again
    assert sum(t.state in FINISHED for t in after) == 3
    assert "1 finished trials, 2 to run" in result.stdout


def test_a_bad_search_space_entry_stops_before_any_trial(project):
    result = run(
        ["mtlflow", "tune", "--set", "tune.search_space={model.widthh: {low: 1, high: 4}}"],
        project,
    )
    assert result.returncode == 2
    assert "tune.search_space.model.widthh: no such parameter" in result.stderr
    assert not (project / "optuna.db").exists()
    assert not (project / "reports" / "best_params.yaml").exists()
