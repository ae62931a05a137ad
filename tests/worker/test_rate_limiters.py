"""One limiter suite, run on both backends (as dramatiq's rate-limit tests run on every ``rate_limiter_backend``):
``RedisRateLimiter`` (the fleet's, one Lua script on a real Redis and its clock) and ``InMemoryRateLimiter`` (its
twin, on a clock the test moves).

Nothing sleeps and nothing is timed. A grant says how long after its reservation a request may go, so each
reservation has a slot, ``reserved_at + wait_seconds``: the limit is checked on the slots. On Redis the reservation
instants are read from the test's monotonic clock, so a slot is known to within the time the reservations took
(``spread``); on the fake clock, exactly. Where time must pass (a pause ending), the in-memory clock is advanced and
the Redis test waits for the condition.
"""

from __future__ import annotations

import itertools
import threading
import time
import uuid
from collections.abc import Callable, Iterator
from concurrent.futures import ThreadPoolExecutor
from dataclasses import dataclass, field

import pytest

from genesys_closer.config.redis_keys import KEYS
from genesys_closer.shared.rate_limit import InMemoryRateLimiter, RateLimitHeaders, RedisRateLimiter
from genesys_closer.shared.redis_connection import connect, text
from tests.waiting import wait_until

Limiter = InMemoryRateLimiter | RedisRateLimiter


class FakeClock:
    def __init__(self) -> None:
        self.now = 1000.0

    def __call__(self) -> float:
        return self.now


@dataclass
class Backend:
    """Makes limiters on one backend. ``client(bucket)`` is one more worker's view of a bucket: on Redis its own
    connection; in memory the same object (the twin serves one process)."""

    name: str
    make: Callable[[str, float, float], Limiter]
    now: Callable[[], float]
    advance: Callable[[Limiter, float], None]
    buckets: dict[str, Limiter] = field(default_factory=dict)

    def limiter(self, limit_per_minute: float, headroom: float = 0.97, bucket: str = "") -> Limiter:
        made = self.make(bucket or uuid.uuid4().hex, limit_per_minute, headroom)
        return self.buckets.setdefault(bucket, made) if bucket and self.name == "memory" else made

    def slots(self, limiter: Limiter, count: int, max_wait_seconds: float) -> tuple[list[float], float]:
        """Reserve ``count`` slots; (their times, how long reserving took on the test's clock)."""
        started = self.now()
        slots = []
        for _ in range(count):
            reserved_at = self.now()
            grant = limiter.reserve(max_wait_seconds)
            assert grant.granted, grant
            slots.append(reserved_at + grant.wait_seconds)
        return slots, self.now() - started


def memory_backend() -> Backend:
    clock = FakeClock()

    def advance(_limiter: Limiter, seconds: float) -> None:
        clock.now += seconds

    return Backend("memory", lambda _bucket, limit, headroom: InMemoryRateLimiter(limit, headroom, clock=clock),
                   clock, advance)


def redis_backend(redis_url: str) -> Backend:
    def advance(limiter: Limiter, seconds: float) -> None:
        """Time passes on Redis' clock: wait until the limiter grants again (at most the seconds and a margin; the
        probe that is granted takes a slot)."""
        wait_until(lambda: limiter.reserve(0).granted, timeout=seconds + 5, interval=0.05)

    return Backend("redis", lambda bucket, limit, headroom: RedisRateLimiter(connect(redis_url), bucket, limit,
                                                                              headroom),
                   time.monotonic, advance)


@pytest.fixture(params=["memory", "redis"])
def backend(request: pytest.FixtureRequest) -> Iterator[Backend]:
    if request.param == "memory":
        yield memory_backend()
    else:
        yield redis_backend(request.getfixturevalue("redis_url"))


def gaps(slots: list[float]) -> list[float]:
    return [later - earlier for earlier, later in itertools.pairwise(sorted(slots))]


def test_reservations_are_spaced_by_the_emission_interval(backend: Backend) -> None:
    limiter = backend.limiter(60, headroom=1.0)  # one per second
    slots, spread = backend.slots(limiter, 5, max_wait_seconds=10)
    assert all(gap == pytest.approx(1.0, abs=spread + 1e-6) for gap in gaps(slots)), (slots, spread)


def test_clients_in_threads_share_one_bucket(backend: Backend) -> None:
    """40 reservations from 4 clients of one bucket in 4 threads get 40 distinct slots one interval apart (10/s)."""
    bucket = uuid.uuid4().hex
    clients = [backend.limiter(600, headroom=1.0, bucket=bucket) for _ in range(4)]
    slots: list[float] = []
    lock = threading.Lock()

    def reserve_ten(limiter: Limiter) -> None:
        for _ in range(10):
            reserved_at = backend.now()
            grant = limiter.reserve(10)
            assert grant.granted
            with lock:
                slots.append(reserved_at + grant.wait_seconds)

    started = backend.now()
    with ThreadPoolExecutor(4) as pool:
        list(pool.map(reserve_ten, clients))
    spread = backend.now() - started
    assert len(slots) == 40
    assert all(0.1 - spread - 1e-6 <= gap <= 0.1 + spread + 1e-6 for gap in gaps(slots)), (gaps(slots), spread)
    assert max(slots) - min(slots) == pytest.approx(3.9, abs=spread + 1e-6)


def test_no_reservation_beyond_max_wait(backend: Backend) -> None:
    limiter = backend.limiter(60, headroom=1.0)
    started = backend.now()
    for _ in range(3):
        assert limiter.reserve(5).granted
    grant = limiter.reserve(1.5)
    spread = backend.now() - started
    assert not grant.granted and grant.wait_seconds == pytest.approx(3, abs=spread + 1e-6)
    assert limiter.reserve(5).wait_seconds == pytest.approx(3, abs=spread + 1e-6)  # nothing was reserved by the refusal


def test_no_sixty_seconds_hold_more_than_the_limit(backend: Backend) -> None:
    """700 reservations at 300/min: whatever window of 60 s one looks at, at most 300 slots fall in it."""
    limiter = backend.limiter(300, headroom=0.97)
    slots, spread = backend.slots(limiter, 700, max_wait_seconds=200)
    slots.sort()
    for i, start in enumerate(slots):
        in_window = sum(1 for t in slots[i:] if t < start + 60 - spread)
        assert in_window <= 300, (start, in_window)


def test_buckets_are_separate(backend: Backend) -> None:
    a, b = backend.limiter(60, headroom=1.0), backend.limiter(60, headroom=1.0)
    assert a.reserve(0).granted and b.reserve(0).granted
    assert not a.reserve(0).granted


def test_pause_is_shared_and_counted_once(backend: Backend) -> None:
    bucket = uuid.uuid4().hex
    one, two = backend.limiter(6000, bucket=bucket), backend.limiter(6000, bucket=bucket)
    assert one.pause(1.0) is True
    assert two.pause(0.5) is False  # inside the running pause: not a new one
    grant = two.reserve(10)
    assert not grant.granted and 0.5 < grant.wait_seconds <= 1.0
    assert one.pause_count() == 1
    backend.advance(two, 1.0)
    assert two.reserve(1.0).granted  # the pause is over
    assert one.pause_count() == two.pause_count() == 1


def test_server_headers_impose_a_slower_rate(backend: Backend) -> None:
    limiter = backend.limiter(6000, headroom=1.0)
    started = backend.now()
    limiter.observe(RateLimitHeaders(allowed=60, count=1, reset_seconds=59))
    assert limiter.reserve(5).wait_seconds == 0
    wait = limiter.reserve(5).wait_seconds
    assert wait == pytest.approx(1.0, abs=backend.now() - started + 1e-6)  # the server allows only 60/min


def test_server_headers_near_the_limit_pause_until_the_reset(backend: Backend) -> None:
    limiter = backend.limiter(600, headroom=1.0)
    limiter.observe(RateLimitHeaders(allowed=60, count=59, reset_seconds=12))
    grant = limiter.reserve(100)
    assert not grant.granted and 11 < grant.wait_seconds <= 12
    assert limiter.pause_count() == 1


def test_usage_is_counted_per_minute_for_the_console(redis_url: str) -> None:
    """A limiter that records usage counts each granted request in its minute (the console's chart) and lists its
    bucket; one that does not (the intake's) writes nothing of the kind."""
    client = connect(redis_url)
    bucket = f"usage-{uuid.uuid4().hex[:8]}"
    recording = RedisRateLimiter(client, bucket, 60_000, record_usage=True)
    quiet = RedisRateLimiter(client, f"{bucket}-quiet", 60_000)
    grants = [recording.reserve(5.0) for _ in range(25)]
    assert all(g.granted for g in grants)
    for _ in range(5):
        assert quiet.reserve(5.0).granted
    used = {text(k): text(v) for k, v in client.hgetall(KEYS.rate_limit(bucket, "used")).items()}
    minutes = {k: int(v) for k, v in used.items() if k.isdigit()}
    assert sum(minutes.values()) == 25 and len(minutes) <= 2  # a minute boundary may fall among them
    assert float(used["limit"]) == 60_000 and abs(int(used["admitted"]) - 60_000 * 0.97) < 10  # whole-us interval
    assert 0 < client.ttl(KEYS.rate_limit(bucket, "used")) <= 7200
    buckets = {text(b) for b in client.smembers(KEYS.rate_limit_buckets)}
    assert bucket in buckets and f"{bucket}-quiet" not in buckets
    assert not client.exists(KEYS.rate_limit(f"{bucket}-quiet", "used"))


def test_usage_keeps_only_the_last_hour(redis_url: str) -> None:
    """The first grant of a minute drops minutes older than an hour: the hash stays small however long it runs."""
    client = connect(redis_url)
    bucket = f"usage-{uuid.uuid4().hex[:8]}"
    key = KEYS.rate_limit(bucket, "used")
    now_minute = int(client.time()[0]) // 60
    client.hset(key, mapping={str(now_minute - 61): 5, str(now_minute - 59): 7})
    assert RedisRateLimiter(client, bucket, 60_000, record_usage=True).reserve(5.0).granted
    fields = {text(k) for k in client.hkeys(key)}
    assert str(now_minute - 61) not in fields and str(now_minute - 59) in fields
