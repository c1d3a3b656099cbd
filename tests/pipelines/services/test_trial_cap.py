"""``CappedStorage`` on a real SQLite study: the cap on trials holding a slot, and
``enqueue_once`` queueing params.yaml's values once (re-entering its own lock)."""

from __future__ import annotations

from pathlib import Path

import optuna
import pytest
from optuna.trial import TrialState

from pipelines.services.trial_cap import CappedStorage, StudyFull


def capped_study(tmp_path: Path, cap: int) -> tuple[CappedStorage, optuna.Study]:
    storage = CappedStorage(f"sqlite:///{tmp_path / 'study.db'}", cap=cap)
    return storage, optuna.create_study(study_name="s", storage=storage)


def test_enqueue_once_queues_values_once(tmp_path):
    storage, study = capped_study(tmp_path, cap=3)
    for _ in range(3):
        storage.enqueue_once(study, {"x": 1.0})
    storage.enqueue_once(study, {"x": 2.0})
    trials = study.get_trials(deepcopy=False)
    assert [(t.state, t.params) for t in trials] == [(TrialState.WAITING, {})] * 2
    assert [t.system_attrs["fixed_params"] for t in trials] == [{"x": 1.0}, {"x": 2.0}]


def test_a_failed_trial_gives_its_slot_and_none_is_created_past_the_cap(tmp_path):
    storage, study = capped_study(tmp_path, cap=2)

    def objective(trial: optuna.Trial) -> float:
        x = trial.suggest_float("x", 0, 1)
        if trial.number == 0:
            raise RuntimeError("a failed trial")
        return x

    with pytest.raises(StudyFull):  # ends the optimize loop: what `tune` catches
        study.optimize(objective, n_trials=5, catch=(RuntimeError,))
    states = [t.state for t in study.get_trials(deepcopy=False)]
    assert states == [TrialState.FAIL, TrialState.COMPLETE, TrialState.COMPLETE]
    with pytest.raises(StudyFull):
        study.ask()
    with pytest.raises(StudyFull):
        storage.enqueue_once(study, {"x": 0.5})


def _pop_all(url: str, start: float) -> list[int]:
    """In a process of its own: take queued trials until none is left (as ``ask`` does)."""
    import time

    study = optuna.load_study(study_name="s", storage=CappedStorage(url, cap=40))
    while time.time() < start:  # start together, so all read the same queue
        time.sleep(0.001)
    taken = []
    while True:
        try:
            trial = study.ask()  # the queued trials fill the cap: none is created
        except StudyFull:
            return taken
        taken.append(trial.number)
        study.tell(trial, 0.0)


def test_processes_taking_queued_trials_take_each_one_once(tmp_path):
    # SQLite ignores SELECT ... FOR UPDATE: without the lock, two processes both read a trial
    # as WAITING and both run it, and the second one's tell fails on a COMPLETE trial
    import multiprocessing
    import time

    storage, study = capped_study(tmp_path, cap=40)
    for x in range(40):
        study.enqueue_trial({"x": float(x)})
    start = time.time() + 2
    with multiprocessing.get_context("spawn").Pool(3) as pool:
        taken = pool.starmap(_pop_all, [(storage.url, start)] * 3)
    numbers = sorted(n for t in taken for n in t)
    assert numbers == list(range(40)), taken
