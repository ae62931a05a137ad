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

# -- the line: work that hands itself back instead of sleeping on a slot (issue 20, fair sharing) ---------------------
def test_tickets_line_up_one_interval_apart_and_keep_their_turn(backend: Backend) -> None:
    """Bulk work finds no slot near: nothing is reserved, each ticket gets a turn one interval after the last, a ticket
    coming back early keeps its turn (never moves back), and a ticket that got a slot leaves the line."""
    limiter = backend.limiter(60, headroom=1.0)  # one per second
    started = backend.now()
    assert limiter.reserve_in_line("first", 0.3).granted  # a slot near: taken
    turns = [limiter.reserve_in_line(ticket, 0.3) for ticket in ("a", "b", "c")]
    spread = backend.now() - started
    assert not any(t.granted for t in turns)
    assert [t.wait_seconds for t in turns] == pytest.approx([1.0, 2.0, 3.0], abs=spread + 1e-6)
    again = limiter.reserve_in_line("b", 0.3)  # back early: the same turn, not a new one at the end
    assert not again.granted and again.wait_seconds == pytest.approx(2.0, abs=backend.now() - started + 1e-6)
    lined_up = limiter.reserve(10)  # the line reserved nothing: the next slot is still one interval away
    assert lined_up.wait_seconds == pytest.approx(1.0, abs=backend.now() - started + 1e-6)
    assert limiter.reserve_in_line("d", 0.3).wait_seconds == pytest.approx(4.0, abs=backend.now() - started + 1e-6)


def test_a_ticket_back_at_its_turn_without_a_slot_goes_to_the_end_of_the_line(backend: Backend) -> None:
    """Work outside the line (a single close) took the slot a ticket was due: back at its turn (here: its turn within
    the horizon it accepts) it finds none near and lines up again after the last ticket, so it never comes back
    again and again before a slot can be free for it."""
    limiter = backend.limiter(60, headroom=1.0)
    started = backend.now()
    assert limiter.reserve_in_line("first", 0.0).granted
    assert [limiter.reserve_in_line(t, 0.0).wait_seconds for t in ("a", "b")] == pytest.approx(
        [1.0, 2.0], abs=backend.now() - started + 1e-6)
    assert limiter.reserve(10).granted  # a single close takes the slot at +1 s
    back = limiter.reserve_in_line("a", 1.5)  # its turn (+1 s) is within 1.5 s, the next free slot (+2 s) is not
    assert not back.granted and back.wait_seconds == pytest.approx(3.0, abs=backend.now() - started + 1e-6)


def test_a_ticket_whose_turn_came_takes_its_slot_and_leaves_the_line(backend: Backend) -> None:
    limiter = backend.limiter(600, headroom=1.0)  # ten per second
    assert limiter.reserve_in_line("now", 0.0).granted
    turn = limiter.reserve_in_line("later", 0.0)
    assert not turn.granted and 0.0 < turn.wait_seconds <= 0.1 + 1e-6
    backend.advance(limiter, 0.2)  # (on Redis: until a probe is granted, which takes a slot)
    grant = limiter.reserve_in_line("later", 0.3)
    assert grant.granted
    fresh = limiter.reserve_in_line("next", 0.0)  # "later" left the line: a new ticket lines up after the free slot
    assert fresh.granted or fresh.wait_seconds <= 0.2 + 1e-6


def test_a_paused_limiter_lines_everyone_up_after_the_pause(backend: Backend) -> None:
    limiter = backend.limiter(60, headroom=1.0)
    limiter.pause(5.0)
    first, second = limiter.reserve_in_line("a", 10.0), limiter.reserve_in_line("b", 10.0)
    assert not first.granted and not second.granted  # even a long acceptable wait reserves nothing in a pause
    assert 4.0 < first.wait_seconds <= 5.0 and second.wait_seconds == pytest.approx(first.wait_seconds + 1.0, abs=0.5)


def test_usage_counts_the_slots_granted_in_line_too(redis_url: str) -> None:
    """Bulk work takes its slots through the line (``reserve_in_line``): those count as well, and a ticket put in
    line (no slot) does not."""
    client = connect(redis_url)
    bucket = f"usage-{uuid.uuid4().hex[:8]}"
    limiter = RedisRateLimiter(client, bucket, 60, record_usage=True)  # one slot a second
    first = limiter.reserve_in_line("ticket-1", 0.5)
    second = limiter.reserve_in_line("ticket-2", 0.5)  # the next slot is a second away: lined up, not granted
    assert first.granted and not second.granted
    used = {text(k): text(v) for k, v in client.hgetall(KEYS.rate_limit(bucket, "used")).items()}
    assert sum(int(v) for k, v in used.items() if k.isdigit()) == 1
