"""Waiting on conditions (never on fixed sleeps) and counting requests in time windows."""

from __future__ import annotations

import time
from collections.abc import Callable


def wait_until(predicate: Callable[[], object], timeout: float = 60.0, interval: float = 0.1,
               message: str = "condition not reached") -> None:
    deadline = time.monotonic() + timeout
    while not predicate():
        if time.monotonic() > deadline:
            raise TimeoutError(f"{message} within {timeout:g} s")
        time.sleep(interval)


def max_in_window(times: list[float], window: float) -> int:
    """The most events in any window of ``window`` seconds."""
    times = sorted(times)
    best, start = 0, 0
    for end, t in enumerate(times):
        while t - times[start] >= window:
            start += 1
        best = max(best, end - start + 1)
    return best
