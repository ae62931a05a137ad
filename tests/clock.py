"""A clock a test moves by hand, for code that takes ``clock: Callable[[], float]`` (the emulator): time passes
when the test says so, never by sleeping."""

from __future__ import annotations

import threading
import time


class SteppedClock:
    """Epoch seconds, starting at the real time; ``advance`` moves it. Thread-safe (the emulator serves from a
    thread)."""

    def __init__(self, start: float | None = None) -> None:
        self._now = time.time() if start is None else start
        self._lock = threading.Lock()

    def __call__(self) -> float:
        with self._lock:
            return self._now

    def advance(self, seconds: float) -> None:
        if seconds < 0:
            raise ValueError("a clock does not go back")
        with self._lock:
            self._now += seconds
