"""Keeping the server's memory bounded under large requests.

Two measured causes of growth with concurrent large images (e.g. 8 requests of a 40-megapixel
PNG, just under ``MTLFLOW_SERVE_MAX_PIXELS``): each decode holds the full-size image (about
160 MB for 40 MP) while it is converted and resized, and the scoring server decodes as many
requests at once as its thread pool has threads; and glibc keeps much of what those decodes
freed (RSS stayed 200-400 MB above its start after each burst). ``decode_slot`` lets
``DECODE_SLOTS`` requests decode at once (a small image decodes in about 0.1 ms, so the queue
is short), and ``FreedMemoryTrimmer`` hands freed heap memory back to the kernel
(``malloc_trim``) once a second after requests ran.
"""

from __future__ import annotations

import ctypes
import ctypes.util
import threading
import time
from collections.abc import Callable

DECODE_SLOTS = 2  # requests decoding at once in one server process
decode_slot = threading.BoundedSemaphore(DECODE_SLOTS)


def _malloc_trim() -> Callable[[int], int] | None:
    """glibc's ``malloc_trim``, or None (another C library: nothing to trim)."""
    try:
        return ctypes.CDLL(ctypes.util.find_library("c") or "libc.so.6").malloc_trim
    except (OSError, AttributeError):
        return None


class FreedMemoryTrimmer:
    """A daemon thread that calls ``malloc_trim(0)`` at most once per ``every`` seconds, and
    only after ``touch()`` said a request ran: an idle server costs nothing."""

    def __init__(self, every: float = 1.0):
        self.every, self._trim = every, _malloc_trim()
        self._ran = threading.Event()
        self.trims = 0
        if self._trim is not None:
            threading.Thread(target=self._loop, name="malloc-trim", daemon=True).start()

    def touch(self) -> None:
        self._ran.set()

    def _loop(self) -> None:
        while True:
            self._ran.wait()
            time.sleep(self.every)  # let the burst finish first
            self._ran.clear()
            self._trim(0)
            self.trims += 1
