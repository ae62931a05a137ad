"""The in-memory twin of the fleet limiter, driven by a fake clock."""

from __future__ import annotations

import pytest

from genesys_closer.worker.genesys.http_policy import RateLimitHeaders
from genesys_closer.worker.genesys.rate_limit import InMemoryRateLimiter


class FakeClock:
    def __init__(self) -> None:
        self.now = 1000.0

    def __call__(self) -> float:
        return self.now


def test_reservations_are_spaced_by_the_emission_interval() -> None:
    clock = FakeClock()
    limiter = InMemoryRateLimiter(60, headroom=1.0, clock=clock)  # one per second
    waits = [limiter.reserve(10).wait_seconds for _ in range(5)]
    assert waits == pytest.approx([0, 1, 2, 3, 4])


def test_no_reservation_beyond_max_wait() -> None:
    clock = FakeClock()
    limiter = InMemoryRateLimiter(60, headroom=1.0, clock=clock)
    for _ in range(3):
        assert limiter.reserve(5).granted
    grant = limiter.reserve(1.5)
    assert not grant.granted and grant.wait_seconds == pytest.approx(3)


def test_any_window_holds_the_limit() -> None:
    clock = FakeClock()
    limiter = InMemoryRateLimiter(300, headroom=0.97, clock=clock)
    sent = []
    for _ in range(2000):
        grant = limiter.reserve(0)
        if grant.granted:
            sent.append(clock.now)
        clock.now += 0.01
    for i, start in enumerate(sent):
        in_window = sum(1 for t in sent[i:] if t < start + 60)
        assert in_window <= 300


def test_pause_blocks_everyone_once() -> None:
    clock = FakeClock()
    limiter = InMemoryRateLimiter(6000, clock=clock)
    assert limiter.pause(5) is True
    assert limiter.pause(3) is False  # inside the running pause: not a new one
    grant = limiter.reserve(100)
    assert not grant.granted and grant.wait_seconds == pytest.approx(5)
    clock.now += 5
    assert limiter.reserve(0).granted
    assert limiter.pauses == 1


def test_server_headers_slow_down_and_pause() -> None:
    clock = FakeClock()
    limiter = InMemoryRateLimiter(600, headroom=1.0, clock=clock)
    limiter.observe(RateLimitHeaders(allowed=60, count=1, reset_seconds=50))
    assert limiter.reserve(10).wait_seconds == 0
    assert limiter.reserve(10).wait_seconds == pytest.approx(1.0)  # server allows only 60/min
    limiter.observe(RateLimitHeaders(allowed=60, count=59, reset_seconds=12))
    grant = limiter.reserve(100)
    assert not grant.granted and grant.wait_seconds == pytest.approx(12)
