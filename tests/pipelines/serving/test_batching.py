"""MicroBatcher: concurrent calls share model runs, and each gets exactly its own rows back;
the memory helpers of the served model."""

from __future__ import annotations

import threading
import time
from concurrent.futures import ThreadPoolExecutor

import numpy as np
import pytest

from pipelines.serving.batching import MicroBatcher
from pipelines.serving.memory import FreedMemoryTrimmer


class SlowModel:
    """Answers each row with its own id and the size of the run it was in; each run takes
    ``seconds``, so calls that arrive meanwhile queue."""

    def __init__(self, seconds: float = 0.02, fail_on: int | None = None):
        self.seconds, self.fail_on, self.runs = seconds, fail_on, []

    def __call__(self, inputs: dict[str, np.ndarray]) -> dict[str, list]:
        ids = inputs["x"][:, 0].tolist()
        self.runs.append(len(ids))
        time.sleep(self.seconds)
        if self.fail_on in ids:
            raise ValueError(f"row id {self.fail_on}")
        return {"id": ids, "run_size": [len(ids)] * len(ids)}


def rows(first: int, n: int) -> dict[str, np.ndarray]:
    return {"x": np.arange(first, first + n).reshape(n, 1).repeat(3, axis=1)}


def test_a_lone_call_runs_at_once_alone() -> None:
    model = SlowModel(seconds=0)
    batcher = MicroBatcher(model)
    assert batcher(rows(5, 2)) == {"id": [5, 6], "run_size": [2, 2]}
    assert model.runs == [2] and batcher.batches == 1


def test_concurrent_calls_share_runs_and_get_their_own_rows() -> None:
    model = SlowModel()
    batcher = MicroBatcher(model, max_rows=64)
    sizes = [1, 3, 1, 2, 1, 1, 4, 1] * 4
    starts = np.cumsum([0, *sizes[:-1]]).tolist()
    with ThreadPoolExecutor(8) as pool:
        results = list(pool.map(lambda a: batcher(rows(*a)), zip(starts, sizes, strict=True)))
    for start, size, result in zip(starts, sizes, results, strict=True):
        assert result["id"] == list(range(start, start + size))
    assert sum(model.runs) == sum(sizes)
    assert len(model.runs) < len(sizes) / 2  # calls that queued ran together
    assert max(r for result in results for r in result["run_size"]) > 1


def test_a_run_never_exceeds_max_rows_unless_one_call_alone_does() -> None:
    model = SlowModel()
    batcher = MicroBatcher(model, max_rows=4)
    sizes = [3, 3, 3, 3, 6, 1, 1]
    starts = np.cumsum([0, *sizes[:-1]]).tolist()
    with ThreadPoolExecutor(7) as pool:
        list(pool.map(lambda a: batcher(rows(*a)), zip(starts, sizes, strict=True)))
    assert all(size <= 4 for size in model.runs if size != 6)
    assert sum(model.runs) == sum(sizes)


def test_a_failed_run_fails_each_call_in_it_and_the_batcher_goes_on() -> None:
    model = SlowModel(fail_on=7)
    batcher = MicroBatcher(model)
    gate = threading.Barrier(4)

    def call(first: int) -> dict | str:
        gate.wait()
        try:
            return batcher(rows(first, 1))
        except ValueError as exc:
            return str(exc)

    with ThreadPoolExecutor(4) as pool:
        outcomes = list(pool.map(call, [5, 6, 7, 8]))
    assert "row id 7" in outcomes
    for first, outcome in zip([5, 6, 7, 8], outcomes, strict=True):
        assert outcome == "row id 7" or outcome["id"] == [first]
    assert batcher(rows(1, 1))["id"] == [1]


def test_the_trimmer_trims_once_after_activity_and_not_when_idle() -> None:
    trimmer = FreedMemoryTrimmer(every=0.01)
    if trimmer._trim is None:
        pytest.skip("not glibc: nothing to trim")
    time.sleep(0.05)
    assert trimmer.trims == 0
    for _ in range(5):
        trimmer.touch()
    deadline = time.monotonic() + 5
    while trimmer.trims == 0 and time.monotonic() < deadline:
        time.sleep(0.01)
    time.sleep(0.05)
    assert trimmer.trims == 1
