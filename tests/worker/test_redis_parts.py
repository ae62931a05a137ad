"""The Redis-backed parts against a real redis-server: limiter, shared token, outcomes, breaker."""

from __future__ import annotations

import itertools
import threading
import time
from concurrent.futures import ThreadPoolExecutor

import pytest
import redis

from genesys_closer.config.redis_keys import KEYS
from genesys_closer.shared.outcomes import CloseResult, Outcome
from genesys_closer.shared.rate_limit import RedisRateLimiter
from genesys_closer.shared.redis_connection import connect
from genesys_closer.shared.stores import ResultStores
from genesys_closer.worker.genesys.tokens import RedisTokenProvider, TokenGrant
from genesys_closer.worker.running.breaker import CircuitBreaker
from tests.waiting import wait_until

# The limiter's own tests run on both backends: tests/worker/test_rate_limiters.py.


class CountingFetcher:
    def __init__(self) -> None:
        self.calls = 0
        self.lock = threading.Lock()

    def __call__(self) -> TokenGrant:
        time.sleep(0.2)  # a slow token endpoint widens the race
        with self.lock:
            self.calls += 1
            return TokenGrant(f"secret-token-{self.calls}", 3600)


def test_token_single_flight_across_many_workers(redis_url: str) -> None:
    fetch = CountingFetcher()
    providers = [RedisTokenProvider(connect(redis_url), fetch, "client", "shh") for _ in range(8)]
    with ThreadPoolExecutor(8) as pool:
        tokens = list(pool.map(lambda p: p.get(), providers))
    assert set(tokens) == {"secret-token-1"}
    assert fetch.calls == 1
    assert providers[0].refresh_count() == 1


def test_token_is_encrypted_at_rest_and_ttl_has_margin(redis_url: str) -> None:
    provider = RedisTokenProvider(connect(redis_url), CountingFetcher(), "client", "shh", margin_seconds=300)
    token = provider.get()
    raw = redis.Redis.from_url(redis_url)
    for key in raw.keys("*"):
        dumped = raw.dump(key) or b""
        assert token.encode() not in dumped
    assert 3200 <= raw.ttl(provider.key) <= 3300
    other_secret = RedisTokenProvider(connect(redis_url), CountingFetcher(), "client", "different")
    assert other_secret._read() is None  # without the secret the stored value is useless


def test_invalidate_only_the_failed_token(redis_url: str) -> None:
    fetch = CountingFetcher()
    a = RedisTokenProvider(connect(redis_url), fetch, "client", "shh")
    b = RedisTokenProvider(connect(redis_url), fetch, "client", "shh")
    old = a.get()
    a.invalidate(old)
    new = b.get()
    assert new != old
    a.invalidate(old)  # a late 401 for the old token must not drop the new one
    assert b.get() == new and fetch.calls == 2


def result(cid: str, outcome: Outcome, batch: str | None = "b1") -> CloseResult:
    return CloseResult(conversation_id=cid, outcome=outcome, api_calls=3, batch_id=batch)


def test_batch_counts_each_item_once_and_finishes(redis_client: redis.Redis) -> None:
    store = ResultStores.open(redis_client, 3600)
    store.batches.create("b1", label="test")
    ids = [f"00000000-0000-4000-8000-00000000000{i}" for i in range(3)]
    assert store.batches.add_members("b1", [*ids, ids[0]]) == ids
    store.batches.mark_enqueued("b1", 3)
    assert store.outcomes.record(result(ids[0], Outcome.CLOSED))
    assert not store.outcomes.record(result(ids[0], Outcome.ALREADY_CLOSED))  # the same item again
    store.outcomes.record(result(ids[1], Outcome.NOT_FOUND))
    status = store.batches.status("b1")
    assert status is not None and status.done == 2 and not status.finished and status.state == "running"
    store.outcomes.record(result(ids[2], Outcome.CLOSED))
    status = store.batches.status("b1")
    assert status is not None and status.finished and status.state == "finished"
    assert status.counts == {"closed": 2, "not_found": 1} and status.duplicates == 1
    assert {r.conversation_id for r in store.batches.items("b1")} == set(ids)
    assert store.outcomes.latest(ids[0]).outcome is Outcome.CLOSED  # the duplicate copy changed nothing, not even this
    assert 0 < redis_client.ttl(KEYS.batch("b1")) <= 3600


def test_batch_finished_before_marked_enqueued(redis_client: redis.Redis) -> None:
    store = ResultStores.open(redis_client)
    store.batches.create("b2")
    store.outcomes.record(result("00000000-0000-4000-8000-000000000001", Outcome.CLOSED, "b2"))
    assert not store.batches.status("b2").finished
    store.batches.mark_enqueued("b2", 1)
    assert store.batches.status("b2").state == "finished"


def test_breaker_opens_after_threshold_and_resets(redis_client: redis.Redis) -> None:
    """Open for 0.5 s here (the breaker keeps its open period to the millisecond); production opens it for minutes."""
    breaker = CircuitBreaker(redis_client, "c", threshold=3, open_seconds=0.5)
    assert not breaker.record_failure("missing conversation:communication:disconnect")
    breaker.record_success()
    assert not breaker.record_failure("x") and not breaker.record_failure("x")
    assert breaker.record_failure("missing conversation:communication:disconnect")
    assert "conversation:communication:disconnect" in (breaker.open_reason() or "")
    wait_until(lambda: breaker.open_reason() is None, timeout=10, interval=0.02, message="the breaker closes again")


BULK_CALLERS = 12


def test_bulk_reserves_a_short_horizon_so_interactive_goes_first(redis_url: str) -> None:
    """12 bulk callers at 10 requests/s would, reserving freely, push the next free slot 1.2 s ahead (a single close
    arriving after the third would wait 0.9 s, three times the horizon); in the bulk lane they reserve at most
    BULK_HORIZON_SECONDS ahead, so a single close waits at most that long for its slot, and the bulk callers still
    all get their slots at the full rate."""
    from genesys_closer.shared.lanes import BULK, BULK_HORIZON_SECONDS, lane
    from genesys_closer.worker.genesys.client import Transport

    limiter = RedisRateLimiter(connect(redis_url), "lanes", 600, headroom=1.0)  # one slot every 0.1 s
    transport = Transport(limiter, max_limiter_wait_seconds=5.0)
    granted: list[float] = []
    lock = threading.Lock()

    def bulk_call() -> None:
        with lane(BULK):
            transport.wait_for_slot("bulk")
        with lock:
            granted.append(time.monotonic())

    threads = [threading.Thread(target=bulk_call) for _ in range(BULK_CALLERS)]
    for thread in threads:
        thread.start()
    wait_until(lambda: len(granted) >= 3, timeout=5, interval=0.01)
    interactive = limiter.reserve(5.0)  # what a single close gets while the bulk callers wait
    for thread in threads:
        thread.join(timeout=10)
    assert interactive.granted and interactive.wait_seconds <= BULK_HORIZON_SECONDS + 0.2
    assert len(granted) == BULK_CALLERS  # every bulk caller got its slot (how fast: bench/interactive_lane.py)


def test_bulk_work_holds_its_first_slot_or_gets_a_turn(redis_url: str) -> None:
    """``hold_first_slot`` (bulk work about to make its first call): a slot at most BULK_HORIZON_SECONDS away is
    reserved once and used by the lane block's next request (no second reservation); when none is that near,
    nothing is reserved and the answer is the ticket's turn, tickets one interval apart. Nothing sleeps here on a
    slot further than the horizon."""
    from genesys_closer.shared.lanes import BULK, BULK_HORIZON_SECONDS, hold_slot, lane
    from genesys_closer.worker.genesys.client import Transport

    limiter = RedisRateLimiter(connect(redis_url), "held", 600, headroom=1.0)  # one slot every 0.1 s
    slept: list[float] = []
    transport = Transport(limiter, max_limiter_wait_seconds=5.0, sleep=slept.append)
    with lane(BULK):
        assert transport.hold_first_slot("first") is None
        transport.wait_for_slot("GET /first")  # uses the held slot
    turns: list[tuple[float, float | None]] = []  # (asked at, turn)
    started = time.monotonic()
    with lane(BULK):
        for n in range(8):
            turns.append((time.monotonic(), transport.hold_first_slot(f"t{n}")))
    spread = time.monotonic() - started
    held = [t for _, t in turns if t is None]
    lined = [at + t for at, t in turns if t is not None]  # each ticket's turn on the test's clock
    assert 1 <= len(held) <= 4 and lined  # the slots within the horizon were held, the rest got turns
    assert all(t > 0 for _, t in turns if t is not None)
    assert all(0.1 - spread - 1e-3 <= later - earlier <= 0.1 + spread + 1e-3
               for earlier, later in itertools.pairwise(lined))
    assert all(wait <= BULK_HORIZON_SECONDS + 0.05 for wait in slept)
    next_free = limiter.reserve(10).wait_seconds  # first + held ones reserved; the turns nothing
    assert next_free <= (1 + len(held)) * 0.1 + 0.05
    with pytest.raises(RuntimeError, match="inside a lane block"):
        hold_slot(0.0)
