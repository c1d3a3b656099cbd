"""Two workers, each in its own project copy (standing in for two machines), share one
Optuna study on PostgreSQL: exactly ``n_trials`` finished trials, none lost or run twice,
and a worker SIGKILLed mid-trial has its trial failed by the heartbeat and retried by the
other (issue 22)."""

from __future__ import annotations

import os
import signal
import socket
import subprocess
import time
from pathlib import Path

import optuna
import pytest
from optuna.trial import TrialState

from pipelines.config import load_params
from pipelines.services.best_params import study_name
from pipelines.services.study import FINISHED
from tests.conftest import tiny_params_dict, write_params
from tests.helpers import command_env, copy_project, run
from tests.pg_support import create_database, postgres_cluster

pytestmark = pytest.mark.slow

N_TRIALS = 4


def _worker_copy(root: Path, study_url: str) -> Path:
    copy_project(root)
    raw = tiny_params_dict(root)
    raw["tune"] |= {
        "storage": study_url,
        "n_trials": N_TRIALS,
        "epochs": 60,  # long trials: the kill lands mid-trial
        "heartbeat_seconds": 1,
        "pruner": {"name": "none"},
    }
    write_params(root, raw)
    for stage in ("prepare", "split"):
        result = run(["mtlflow", stage], root)
        assert result.returncode == 0, result.stdout + result.stderr
    return root


def _start(root: Path, seed: int) -> subprocess.Popen[str]:
    return subprocess.Popen(
        ["mtlflow", "tune", "--set", f"tune.seed={seed}"],
        cwd=root,
        env=command_env(),
        stdout=subprocess.PIPE,
        stderr=subprocess.STDOUT,
        text=True,
        start_new_session=True,
    )


def test_two_workers_share_a_postgresql_study_and_a_killed_trial_is_retried(tmp_path):
    with postgres_cluster() as pg:
        study_url = create_database(pg, "optuna")
        a, b = (_worker_copy(tmp_path / name, study_url) for name in ("a", "b"))
        name = study_name(load_params(a / "params.yaml"))
        assert name == study_name(load_params(b / "params.yaml"))  # one study for both

        def trials() -> list[optuna.trial.FrozenTrial]:
            try:
                return optuna.load_study(study_name=name, storage=study_url).trials
            except KeyError:
                return []

        killed = _start(a, 0)
        owner = f"{socket.gethostname()}:{killed.pid}"
        deadline = time.monotonic() + 300
        while not any(
            t.state is TrialState.RUNNING
            and t.user_attrs.get("worker") == owner
            and t.intermediate_values
            for t in trials()
        ):
            assert time.monotonic() < deadline and killed.poll() is None, "no trial training"
            time.sleep(0.2)
        survivor = _start(b, 1)
        os.killpg(killed.pid, signal.SIGKILL)
        killed.communicate()
        (lost,) = [t for t in trials() if t.state is TrialState.RUNNING]
        out = survivor.communicate(timeout=600)[0]
        assert survivor.returncode == 0, out[-3000:]
        final = trials()

    shown = "\n".join([*(f"{t.number} {t.state.name} {t.params}" for t in final), out[-2000:]])
    assert [t.number for t in final] == list(range(len(final))), shown  # none lost
    assert sum(t.state in FINISHED for t in final) == N_TRIALS, shown  # exactly n_trials
    (failed,) = [t for t in final if t.state is TrialState.FAIL]  # the killed one, by heartbeat
    assert failed.number == lost.number, shown
    (retried,) = [t for t in final if t.system_attrs.get("failed_trial") == lost.number]
    assert retried.state in FINISHED and retried.params == lost.params, shown
    assert retried.user_attrs["worker"] == f"{socket.gethostname()}:{survivor.pid}", shown
    assert len(final) == N_TRIALS + 1, shown  # the n finished and the one failed: no extra


def test_workers_starting_together_queue_the_default_values_once(tmp_path):
    """Every `tune` queues params.yaml's values as a trial unless the study has them: eight
    workers doing it at the same moment on PostgreSQL queue one trial, not several."""
    from concurrent.futures import ThreadPoolExecutor
    from threading import Barrier

    from pipelines.services.trial_cap import CappedStorage

    workers = 8
    with postgres_cluster() as pg:
        study_url = create_database(pg, "optuna")
        optuna.create_study(study_name="s", storage=study_url)
        barrier = Barrier(workers)

        def start_worker(_: int) -> None:
            storage = CappedStorage(study_url, cap=4)  # each its own engine and connections
            study = optuna.load_study(study_name="s", storage=storage)
            barrier.wait()
            storage.enqueue_once(study, {"train.lr": 0.001})

        with ThreadPoolExecutor(workers) as pool:
            list(pool.map(start_worker, range(workers)))
        trials = optuna.load_study(study_name="s", storage=study_url).trials
    assert [t.state for t in trials] == [TrialState.WAITING]
    assert trials[0].system_attrs["fixed_params"] == {"train.lr": 0.001}
