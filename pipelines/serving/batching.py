"""Requests that arrive together run through the model together.

MLflow's scoring server calls the pyfunc's ``predict`` from a thread pool, one thread per
request in flight. Run alone, each call pays the model's fixed cost for one row, and the
calls' intra-op threads fight over the cores. ``MicroBatcher`` lets one call at a time run the
model, on the rows of every call waiting at that moment (up to ``max_rows``), and hands each
call its own rows back. It never waits for company: a call that finds the model idle runs at
once, so a lone request pays nothing; the batches form from the calls that queue while the
model is busy.
"""

from __future__ import annotations

import threading
from collections import deque
from collections.abc import Callable
from dataclasses import dataclass, field
from typing import Any

import numpy as np

Inputs = dict[str, np.ndarray]
Columns = dict[str, list[Any]]


@dataclass
class _Call:
    inputs: Inputs
    rows: int
    result: Columns | None = None
    error: BaseException | None = None
    done: bool = field(default=False)


class MicroBatcher:
    """``batcher(inputs) -> columns``, as ``run(inputs)`` would return for those rows alone."""

    def __init__(self, run: Callable[[Inputs], Columns], max_rows: int = 64):
        self.run, self.max_rows = run, max_rows
        self._waiting: deque[_Call] = deque()
        self._queue_lock = threading.Lock()
        self._model_lock = threading.Lock()
        self.batches = 0  # model runs so far, for tests and benchmarks

    @property
    def waiting(self) -> int:
        """Calls queued for the model now."""
        return len(self._waiting)

    def __call__(self, inputs: Inputs) -> Columns:
        call = _Call(inputs, len(next(iter(inputs.values()))))
        with self._queue_lock:
            self._waiting.append(call)
        while not call.done:
            with self._model_lock:
                if not call.done:  # else another call ran ours while we waited
                    self._run_waiting()
        if call.error is not None:
            raise call.error
        assert call.result is not None
        return call.result

    def _run_waiting(self) -> None:
        """Run the oldest waiting calls, at least one, at most ``max_rows`` rows together."""
        batch: list[_Call] = []
        with self._queue_lock:
            rows = 0
            while self._waiting and (not batch or rows + self._waiting[0].rows <= self.max_rows):
                batch.append(self._waiting.popleft())
                rows += batch[-1].rows
        try:
            if len(batch) == 1:
                batch[0].result = self.run(batch[0].inputs)
            else:
                joined = {k: np.concatenate([c.inputs[k] for c in batch]) for k in batch[0].inputs}
                columns, start = self.run(joined), 0
                for call in batch:
                    end = start + call.rows
                    call.result = {name: values[start:end] for name, values in columns.items()}
                    start = end
        except BaseException as exc:  # every call of the batch fails with it
            for call in batch:
                call.error = exc
        finally:
            self.batches += 1
            for call in batch:
                call.done = True
