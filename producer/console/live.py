"""Live views that stay cheap however many browsers watch: one shared read per interval per intake process.

``SharedReads`` keeps each read (a batch's status, the recent batches, the fleet's state) for ``ttl`` seconds; a
viewer that asks meanwhile gets the same answer, and viewers asking at once wait for one read instead of making
one each. ``Rates`` turns successive statuses of a batch into closes per minute and an ETA, from the samples those
shared reads took (no extra Redis call). ``event_stream`` is the Server-Sent Events loop a page listens to.
"""

from __future__ import annotations

import asyncio
import json
import threading
import time
from collections import deque
from collections.abc import AsyncIterator, Awaitable, Callable
from typing import Any

import redis
from starlette.requests import Request

RATE_WINDOW_SECONDS = 60.0  # closes per minute: over the last minute's samples
MAX_RATE_TRACKED = 1000  # batches whose samples are kept (the oldest are dropped beyond)
STREAM_SECONDS = 60.0  # a stream ends after this and the browser reconnects: a shutdown never waits longer


class SharedReads:
    """Per-key memo with a time to live, safe across threads: at most one read per key per ``ttl``."""

    def __init__(self, ttl: float, clock: Callable[[], float] = time.monotonic) -> None:
        self.ttl = ttl
        self.clock = clock
        self._values: dict[str, tuple[float, Any]] = {}
        self._locks: dict[str, threading.Lock] = {}
        self._guard = threading.Lock()
        self.reads = 0  # how many reads were really made (tests and the docs' figure)

    def get(self, key: str, read: Callable[[], Any], ttl: float | None = None) -> Any:
        keep = self.ttl if ttl is None else ttl
        cached = self._values.get(key)
        if cached is not None and self.clock() - cached[0] < keep:
            return cached[1]
        with self._guard:
            lock = self._locks.setdefault(key, threading.Lock())
        with lock:  # one reader per key; the others find its answer when they get the lock
            cached = self._values.get(key)
            if cached is not None and self.clock() - cached[0] < keep:
                return cached[1]
            value = read()
            self.reads += 1
            self._values[key] = (self.clock(), value)
            if len(self._values) > 4 * MAX_RATE_TRACKED:
                self._drop_old(keep)
            return value

    def _drop_old(self, keep: float) -> None:
        now = self.clock()
        for key, (at, _) in list(self._values.items()):
            if now - at >= keep:
                self._values.pop(key, None)


class Rates:
    """Closes per minute and ETA per batch, from (time, done) samples of the shared status reads."""

    def __init__(self, clock: Callable[[], float] = time.time) -> None:
        self.clock = clock
        self._samples: dict[str, deque[tuple[float, int]]] = {}
        self._lock = threading.Lock()

    def figures(self, status: dict[str, Any]) -> dict[str, Any]:
        """``status`` (a BatchStatus as a dict) with ``rate_per_minute`` and ``eta_seconds`` (None when unknown)."""
        batch_id, done, total = status["batch_id"], int(status["done"]), status["total"]
        created, finished = float(status.get("created_at") or 0), status.get("finished_at")
        now = self.clock()
        if finished is not None:
            elapsed = max(float(finished) - created, 1e-6)
            return {**status, "rate_per_minute": round(done * 60 / elapsed, 1) if created else None,
                    "eta_seconds": 0}
        with self._lock:
            samples = self._samples.setdefault(batch_id, deque())
            if not samples or samples[-1][1] != done or now - samples[-1][0] >= 1:
                samples.append((now, done))
            while len(samples) > 2 and now - samples[0][0] > RATE_WINDOW_SECONDS:
                samples.popleft()
            if len(self._samples) > MAX_RATE_TRACKED:
                self._samples.pop(next(iter(self._samples)))
            first = samples[0]
        span = now - first[0]
        if span >= 3 and done > first[1]:
            rate = (done - first[1]) * 60 / span
        elif created and now > created and done:
            rate = done * 60 / (now - created)  # too few samples yet: the average since it started
        else:
            rate = 0.0
        eta = None if not rate or total is None else round((int(total) - done) * 60 / rate)
        return {**status, "rate_per_minute": round(rate, 1), "eta_seconds": eta}


def sse(data: Any, event: str = "message") -> str:
    return f"event: {event}\ndata: {json.dumps(data, separators=(',', ':'))}\n\n"


async def event_stream(request: Request, read: Callable[[], Awaitable[Any]], finished: Callable[[Any], bool],
                       interval: float, alive: Callable[[], Awaitable[bool]],
                       alive_every: float = 10.0, lifetime: float = STREAM_SECONDS) -> AsyncIterator[str]:
    """Send ``read()`` whenever it changes (and a comment line as a keep-alive), until ``finished`` says so, the
    viewer leaves, or ``alive()`` says the session ended (a logout ends its streams within ``alive_every``). After
    ``lifetime`` the stream ends and EventSource reconnects by itself (uvicorn's shutdown waits for open responses:
    an endless stream would hold it)."""
    last: str | None = None
    checked = started = time.monotonic()
    yield f"retry: {round(interval * 1000 * 2)}\n\n"
    while True:
        try:
            value = await read()
        except redis.RedisError:  # said once, then the stream ends; EventSource retries after ``retry``
            yield sse({"error": "the queue is unavailable; retrying"}, "unavailable")
            return
        shown = json.dumps(value, sort_keys=True)
        if shown != last:
            last = shown
            yield sse(value)
        else:
            yield ": still\n\n"
        if finished(value):
            yield sse({}, "end")
            return
        if time.monotonic() - started >= lifetime:
            return
        if time.monotonic() - checked >= alive_every:
            checked = time.monotonic()
            if not await alive():
                yield sse({}, "logged-out")
                return
        await asyncio.sleep(interval)
        if await request.is_disconnected():
            return
