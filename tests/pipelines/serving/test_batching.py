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
    """Answers each row with its own id and the size of the run it was in. Its first run
    waits for ``release``, so that the calls sent meanwhile queue."""

    def __init__(self, fail_on: int | None = None):
        self.fail_on, self.runs, self.release = fail_on, [], threading.Event()

    def __call__(self, inputs: dict[str, np.ndarray]) -> dict[str, list]:
        ids = inputs["x"][:, 0].tolist()
        self.runs.append(len(ids))
        if len(self.runs) == 1:
            assert self.release.wait(10)
        if self.fail_on in ids:
            raise ValueError(f"row id {self.fail_on}")
        return {"id": ids, "run_size": [len(ids)] * len(ids)}


def rows(first: int, n: int) -> dict[str, np.ndarray]:
    return {"x": np.arange(first, first + n).reshape(n, 1).repeat(3, axis=1)}


def wait_until(condition) -> None:
    deadline = time.monotonic() + 10
    while not condition():
        assert time.monotonic() < deadline
        time.sleep(0.001)


def queue_behind_a_running_call(batcher: MicroBatcher, model: SlowModel, sizes: list[int]):
    """One call of 1 row (id 0) runs and holds the model while calls of ``sizes`` rows queue,
    in this order; then the model is let go. The calls' results, the first one's included."""
    starts = np.cumsum([1, *sizes[:-1]]).tolist()
    with ThreadPoolExecutor(len(sizes) + 1) as pool:
        calls = [pool.submit(batcher, rows(0, 1))]
        wait_until(lambda: model.runs == [1])
        for start, size in zip(starts, sizes, strict=True):
            calls.append(pool.submit(batcher, rows(start, size)))
            queued = len(calls) - 1
            wait_until(lambda queued=queued: batcher.waiting == queued)
        model.release.set()
        return [call.result() for call in calls], [0, *starts]


def test_a_lone_call_runs_at_once_alone() -> None:
    model = SlowModel()
    model.release.set()
    batcher = MicroBatcher(model)
    assert batcher(rows(5, 2)) == {"id": [5, 6], "run_size": [2, 2]}
    assert model.runs == [2] and batcher.batches == 1


def test_calls_that_queue_while_the_model_runs_share_one_run_and_get_their_own_rows() -> None:
    model = SlowModel()
    batcher = MicroBatcher(model, max_rows=64)
    sizes = [1, 3, 1, 2, 1, 1, 4]
    results, starts = queue_behind_a_running_call(batcher, model, sizes)
    for start, size, result in zip(starts, [1, *sizes], results, strict=True):
        assert result["id"] == list(range(start, start + size))
    assert model.runs == [1, sum(sizes)]
    assert results[1]["run_size"] == [sum(sizes)] * 1


def test_a_run_takes_calls_in_order_up_to_max_rows_and_a_larger_call_alone() -> None:
    model = SlowModel()
    batcher = MicroBatcher(model, max_rows=4)
    results, _ = queue_behind_a_running_call(batcher, model, [3, 1, 3, 6, 1, 1])
    assert model.runs == [1, 4, 3, 6, 2]
    assert [len(r["id"]) for r in results] == [1, 3, 1, 3, 6, 1, 1]


def test_a_failed_run_fails_each_call_in_it_and_the_batcher_goes_on() -> None:
    model = SlowModel(fail_on=2)
    batcher = MicroBatcher(model)
    with pytest.raises(ValueError, match="row id 2"):
        queue_behind_a_running_call(batcher, model, [1, 1, 1])  # ids 1, 2, 3: one run
    assert model.runs == [1, 3]
    assert batcher(rows(7, 1))["id"] == [7]


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
