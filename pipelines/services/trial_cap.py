"""Exactly ``tune.n_trials`` trials, however many workers share the study.

Optuna's ``MaxTrialsCallback`` stops a worker after its trial, so two workers that both see
n - 1 finished trials both start one more. Here the count and the creation of a trial are one
step across all workers: ``CappedStorage.create_new_trial`` takes a lock the study's database
provides (a PostgreSQL advisory lock, MySQL's ``GET_LOCK``, a file lock beside a SQLite
file), counts the trials that hold a slot (every state but FAIL: a queued or running trial
holds one; a failed one gives its slot to its retry) and refuses past the cap with
``StudyFull``, which ends that worker's ``optimize``. ``enqueue_once`` queues params.yaml's
own values under the same lock, so workers starting together queue them once, and a worker
takes a queued trial under it, so no two workers take the same one.
"""

from __future__ import annotations

import hashlib
import threading
from collections.abc import Iterator, Sequence
from contextlib import contextmanager
from typing import Any

import optuna
import sqlalchemy
from optuna.storages import RDBStorage
from optuna.trial import FrozenTrial, TrialState

from pipelines.files import sqlite_lock

HOLDS_A_SLOT = (TrialState.COMPLETE, TrialState.PRUNED, TrialState.RUNNING, TrialState.WAITING)


class StudyFull(Exception):
    """The study holds its ``n_trials``: no further trial is created."""


class CappedStorage(RDBStorage):
    """An ``RDBStorage`` that creates at most ``cap`` trials holding a slot per study."""

    def __init__(self, url: str, *, cap: int, **kwargs: Any) -> None:
        super().__init__(url, **kwargs)
        self.url, self.cap = url, cap
        self._holding = threading.local()  # the study whose lock this thread holds

    def enqueue_once(self, study: optuna.Study, values: dict[str, Any]) -> None:
        """Queue a trial of ``values`` unless the study has one with them: the check and the
        queueing are one step across workers (``StudyFull`` past the cap)."""
        with self._slot_lock(self.get_study_id_from_name(study.study_name)):
            study.enqueue_trial(values, skip_if_exists=True)

    # Optuna's cache in front of every study's storage (``_CachedStorage``) creates trials
    # through this private method, and the public ``create_new_trial`` does too.
    def _create_new_trial(
        self, study_id: int, template_trial: FrozenTrial | None = None
    ) -> FrozenTrial:
        with self._slot_lock(study_id):
            held = len(self.get_all_trials(study_id, deepcopy=False, states=HOLDS_A_SLOT))
            if held >= self.cap:
                raise StudyFull(f"the study holds its {self.cap} trials")
            return super()._create_new_trial(study_id, template_trial)

    def set_trial_state_values(
        self, trial_id: int, state: TrialState, values: Sequence[float] | None = None
    ) -> bool:
        """Taking a queued trial (WAITING to RUNNING) happens under the lock too: SQLite
        ignores the row lock Optuna asks for, so two workers could both take one trial."""
        if state != TrialState.RUNNING:
            return super().set_trial_state_values(trial_id, state, values)
        with self._database_lock(f"mtlflow-trial-{trial_id}"):  # a lock on that one trial
            return super().set_trial_state_values(trial_id, state, values)

    @contextmanager
    def _slot_lock(self, study_id: int) -> Iterator[None]:
        if getattr(self._holding, "study", None) == study_id:  # re-entered: already held
            yield
            return
        self._holding.study = study_id
        try:
            with self._database_lock(f"mtlflow-trials-{study_id}"):
                yield
        finally:
            self._holding.study = None

    @contextmanager
    def _database_lock(self, name: str) -> Iterator[None]:
        dialect = self.engine.dialect.name
        key = int.from_bytes(hashlib.sha256(name.encode()).digest()[:7])
        if dialect == "sqlite":
            with sqlite_lock(self.url):
                yield
        elif dialect in ("postgresql", "mysql", "mariadb"):
            take, give = (
                ("select pg_advisory_lock(:k)", "select pg_advisory_unlock(:k)")
                if dialect == "postgresql"
                else ("select get_lock(:k, 600)", "select release_lock(:k)")  # MySQL, MariaDB
            )
            with self.engine.connect() as connection:
                connection.execute(sqlalchemy.text(take), {"k": key})
                try:
                    yield
                finally:
                    connection.execute(sqlalchemy.text(give), {"k": key})
        else:  # no cross-process lock known here: MaxTrialsCallback's bound applies
            yield
