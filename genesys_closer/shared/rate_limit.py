"""One rate limit for the whole fleet.

``RateLimiter`` is the interface; ``RedisRateLimiter`` holds it for every worker process on every host (one GCRA
bucket per OAuth client, one atomic Lua script, Redis server time); ``InMemoryRateLimiter`` is its twin for unit
tests. Callers reserve a slot right before each HTTP request and sleep until it. The server is listened to:
``inin-ratelimit-*`` headers lower the rate or pause the fleet before the limit, and a 429 starts one shared pause.

Work that must not sleep on a slot (bulk work holding a pool process another org could use) asks with
``reserve_in_line``: a slot near enough, or a ticket in the limiter's line and the seconds until its turn, when it
comes back. Tickets are handed out at the limiter's pace, so work handed back returns spread as fast as the limit
takes it, in the order it lined up, and never more often than needed.
"""

from __future__ import annotations

import threading
import time
from collections.abc import Callable, Mapping
from dataclasses import dataclass
from typing import Protocol

import redis

from genesys_closer.config.redis_keys import KEYS, RedisKeys
from genesys_closer.shared.redis_connection import register_lua


@dataclass(frozen=True)
class RateLimitHeaders:
    """The ``inin-ratelimit-*`` headers of one response."""

    allowed: int
    count: int
    reset_seconds: float

    @classmethod
    def parse(cls, headers: Mapping[str, str]) -> RateLimitHeaders | None:
        try:
            return cls(
                allowed=int(headers["inin-ratelimit-allowed"]),
                count=int(headers["inin-ratelimit-count"]),
                reset_seconds=float(headers["inin-ratelimit-reset"]),
            )
        except (KeyError, ValueError, TypeError):
            return None

    def pause_seconds(self, headroom_requests: int = 2) -> float:
        """How long to pause the fleet because the server's window is (nearly) used up; 0 when there is room."""
        if self.allowed - self.count <= headroom_requests:
            return max(self.reset_seconds, 0.0)
        return 0.0


MICROS = 1_000_000
IMPOSED_INTERVAL_TTL_SECONDS = 600
TICKET_STALE_SECONDS = 120.0  # a ticket whose turn passed this long ago is forgotten (its work was lost or ended)


@dataclass(frozen=True)
class Grant:
    """``granted``: a slot is reserved, send after ``wait_seconds``. Otherwise ask again after ``wait_seconds``."""

    granted: bool
    wait_seconds: float


class RateLimiter(Protocol):
    def reserve(self, max_wait_seconds: float) -> Grant:
        """Reserve the next request slot if it comes within ``max_wait_seconds``."""

    def reserve_in_line(self, ticket: str, max_wait_seconds: float) -> Grant:
        """Reserve the next slot if it comes within ``max_wait_seconds`` (the ticket then leaves the line); otherwise
        reserve nothing and give ``ticket`` (the work's id) its place in line: ``wait_seconds`` is when to come back.
        A ticket back before its turn is near keeps it; any other lines up one interval after the last ticket (or
        at the next free slot, if later): work back at its turn without a slot near goes to the end of the line."""

    def pause(self, seconds: float) -> bool:
        """Pause the whole fleet for ``seconds``; True when this started a new pause."""

    def observe(self, headers: RateLimitHeaders) -> None:
        """Adapt to the server's view of the limit."""


def emission_interval_seconds(limit_per_minute: float, headroom: float) -> float:
    """Seconds between requests: the limit times the headroom (e.g. 0.97), spread evenly."""
    return 60.0 / (limit_per_minute * headroom)


class InMemoryRateLimiter:
    """The same GCRA and pause rules as the Redis limiter, for one process; clock injected for tests."""

    def __init__(self, limit_per_minute: float, headroom: float = 0.97, *,
                 clock: Callable[[], float] = time.monotonic) -> None:
        self.interval = emission_interval_seconds(limit_per_minute, headroom)
        self.headroom = headroom
        self.clock = clock
        self.tat = 0.0
        self.paused_until = 0.0
        self.imposed_interval = 0.0
        self.pauses = 0
        self.line: dict[str, float] = {}  # ticket -> its turn
        self._lock = threading.Lock()

    def reserve(self, max_wait_seconds: float) -> Grant:
        with self._lock:
            now = self.clock()
            if now < self.paused_until:
                return Grant(False, self.paused_until - now)
            tat = max(self.tat, now)
            wait = tat - now
            if wait > max_wait_seconds:
                return Grant(False, wait)
            self.tat = tat + max(self.interval, self.imposed_interval)
            return Grant(True, wait)

    def reserve_in_line(self, ticket: str, max_wait_seconds: float) -> Grant:
        """``gcra_reserve_in_line.lua``'s twin."""
        with self._lock:
            now = self.clock()
            interval = max(self.interval, self.imposed_interval)
            self.line = {k: turn for k, turn in self.line.items() if turn >= now - TICKET_STALE_SECONDS}
            free = max(self.tat, now, self.paused_until)
            if now >= self.paused_until and free - now <= max_wait_seconds:
                self.tat = free + interval
                self.line.pop(ticket, None)
                return Grant(True, free - now)
            mine = self.line.pop(ticket, None)
            if mine is not None and mine > now + max_wait_seconds:
                self.line[ticket] = mine
                return Grant(False, mine - now)
            turn = max([free, *(t + interval for t in self.line.values())])
            self.line[ticket] = turn
            return Grant(False, turn - now)

    def pause(self, seconds: float) -> bool:
        with self._lock:
            now = self.clock()
            started = now >= self.paused_until
            self.paused_until = max(self.paused_until, now + seconds)
            self.pauses += started
            return started

    def pause_count(self) -> int:
        """How many pauses were started (``RedisRateLimiter.pause_count``'s twin)."""
        return self.pauses

    def observe(self, headers: RateLimitHeaders) -> None:
        if headers.allowed > 0 and emission_interval_seconds(headers.allowed, self.headroom) > self.interval:
            self.imposed_interval = emission_interval_seconds(headers.allowed, self.headroom)
        pause = headers.pause_seconds()
        if pause > 0:
            self.pause(pause)


class RedisRateLimiter:
    """Fleet-wide limiter: every worker process that uses the same Redis and OAuth client shares one bucket."""

    def __init__(self, client: redis.Redis, bucket: str, limit_per_minute: float, headroom: float = 0.97,
                 *, keys: RedisKeys = KEYS, record_usage: bool = False) -> None:
        """``record_usage``: count the requests granted per minute (the console's chart of the last hour; one
        HINCRBY inside the same script call) and list the bucket in ``keys.rate_limit_buckets``."""
        self.redis = client
        self.headroom = headroom
        self.interval_us = round(emission_interval_seconds(limit_per_minute, headroom) * MICROS)
        self.keys = [keys.rate_limit(bucket, "tat"), keys.rate_limit(bucket, "pause"),
                     keys.rate_limit(bucket, "imposed-interval")]
        self.line_key = keys.rate_limit(bucket, "line")
        self._usage_keys: list[str] = []
        self._usage_args: list[float | str] = []
        if record_usage:
            self._usage_keys = [keys.rate_limit(bucket, "used"), keys.rate_limit_buckets]
            self._usage_args = [limit_per_minute, bucket]
        self.pauses_key = keys.rate_limit(bucket, "pauses")
        self._reserve = register_lua(client, "rate_usage.lua", "gcra_reserve.lua")
        self._reserve_in_line = register_lua(client, "rate_usage.lua", "gcra_reserve_in_line.lua")
        self._pause = register_lua(client, "pause.lua")

    def reserve(self, max_wait_seconds: float) -> Grant:
        granted, wait_us = self._reserve(keys=[*self.keys, *self._usage_keys],
                                         args=[self.interval_us, round(max_wait_seconds * MICROS), *self._usage_args])
        return Grant(bool(int(granted)), int(wait_us) / MICROS)

    def reserve_in_line(self, ticket: str, max_wait_seconds: float) -> Grant:
        granted, wait_us = self._reserve_in_line(
            keys=[*self.keys, self.line_key, *self._usage_keys],
            args=[self.interval_us, round(max_wait_seconds * MICROS), ticket, round(TICKET_STALE_SECONDS * MICROS),
                  *self._usage_args])
        return Grant(bool(int(granted)), int(wait_us) / MICROS)

    def pause(self, seconds: float) -> bool:
        return bool(self._pause(keys=[self.keys[1], self.pauses_key], args=[max(1, round(seconds * 1000))]))

    def observe(self, headers: RateLimitHeaders) -> None:
        if headers.allowed > 0:
            imposed = round(emission_interval_seconds(headers.allowed, self.headroom) * MICROS)
            if imposed > self.interval_us:
                self.redis.set(self.keys[2], imposed, ex=IMPOSED_INTERVAL_TTL_SECONDS)
        pause = headers.pause_seconds()
        if pause > 0:
            self.pause(pause)

    def pause_count(self) -> int:
        return int(self.redis.get(self.pauses_key) or 0)
