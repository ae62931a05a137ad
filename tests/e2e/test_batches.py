"""Batches through real workers: the fleet-wide limit, shared pause and token, duplicates, cancel, crashes."""

from __future__ import annotations

import time
from collections import Counter

import pytest
import redis

from genesys_closer.emulator import EmulatorConfig
from genesys_closer.emulator.admin import EmulatorAdmin
from genesys_closer.producer.api import CloseClient
from genesys_closer.worker.closing.outcomes import Outcome
from genesys_closer.worker.factory import bucket_name
from genesys_closer.worker.results import BatchStatus
from tests.e2e.conftest import StartWorkers


@pytest.fixture
def emulator_config() -> EmulatorConfig:
    return EmulatorConfig(consistency_delay_ms=50, seed=42, rate_limit_per_minute=100_000)


def max_in_window(times: list[float], window: float) -> int:
    times = sorted(times)
    best, start = 0, 0
    for end, t in enumerate(times):
        while t - times[start] >= window:
            start += 1
        best = max(best, end - start + 1)
    return best


def wait_until(predicate: object, timeout: float = 60.0) -> None:
    deadline = time.monotonic() + timeout
    while not predicate():  # type: ignore[operator]
        if time.monotonic() > deadline:
            raise TimeoutError("condition not reached")
        time.sleep(0.1)


@pytest.mark.slow
def test_batch_of_2000_two_workers_hold_the_fleet_limit(start: StartWorkers, admin: EmulatorAdmin,
                                                        client: CloseClient) -> None:
    limit = 12_000  # per minute, for the fleet: 6,000 requests in about 30 s
    admin.faults(rate_limit_per_minute=limit)
    start(2, concurrency=12, genesys_rate_limit_per_minute=limit, confirm_initial_delay_seconds=0.1)
    ids = admin.create(2000)
    started = time.monotonic()
    batch = client.close_many(ids, label="e2e-2000")
    enqueue_seconds = time.monotonic() - started
    status = batch.wait(timeout=400)
    assert status.total == status.done == 2000
    assert status.counts == {"closed": 2000}
    stats = admin.stats()
    assert stats["conversations_open"] == 0
    assert stats["responses_by_status"].get("429", 0) == 0
    times = [r["t"] for r in admin.requests()]
    assert max_in_window(times, 60.0) <= limit
    assert max_in_window(times, 5.0) <= limit / 12 + 16  # smooth: at most one early request per worker slot
    busy = max(times) - min(times)
    achieved = (len(times) - 1) / busy * 60
    calls_per_close = sum(r.api_calls for r in batch.results()) / 2000
    print(f"\n2 workers, limit {limit}/min: achieved {achieved:.0f}/min = {achieved / limit:.3f} of the limit, "
          f"{calls_per_close:.2f} calls per close, enqueue {enqueue_seconds:.2f} s")
    assert achieved >= 0.9 * limit
    assert calls_per_close == pytest.approx(3.0, abs=0.05)


def test_429_storm_pauses_the_fleet_once(start: StartWorkers, admin: EmulatorAdmin, client: CloseClient,
                                         redis_client: redis.Redis) -> None:
    start(2, concurrency=4)
    ids = admin.create(300)
    batch = client.close_many(ids)
    wait_until(lambda: batch.status().done >= 40)
    admin.faults(storm_429_seconds=3)
    status = batch.wait(timeout=120)
    assert status.counts == {"closed": 300}
    pauses = int(redis_client.get(f"genesys-closer:ratelimit:{bucket_name('demo-client')}:pauses") or 0)
    limited = admin.stats()["responses_by_status"].get("429", 0)
    assert pauses == 1
    assert 1 <= limited <= 2 * 8  # only what was in flight when the storm began
    assert admin.stats()["conversations_open"] == 0


def test_token_revocation_mid_batch_fetches_one_token(start: StartWorkers, admin: EmulatorAdmin,
                                                      client: CloseClient) -> None:
    start(2, concurrency=4)
    ids = admin.create(300)
    batch = client.close_many(ids)
    wait_until(lambda: batch.status().done >= 60)
    assert admin.stats()["token_requests"] == 1
    admin.revoke_tokens()
    status = batch.wait(timeout=120)
    assert status.counts == {"closed": 300}
    assert admin.stats()["token_requests"] == 2
    assert admin.stats()["responses_by_status"].get("401", 0) >= 1


def test_duplicate_ids_and_messages_close_once(start: StartWorkers, admin: EmulatorAdmin,
                                               client: CloseClient) -> None:
    start(2, concurrency=4)
    a, b, c = admin.create(3)
    batch = client.close_many([a, a, b, b, b, c, a.upper()])
    singles = [client.close(a) for _ in range(3)] + [client.close(b)]
    status = batch.wait(timeout=60)
    assert status.total == 3 and status.duplicates == 4 and status.done == 3
    for task_id in singles:
        client.app.AsyncResult(task_id).get(timeout=60)
    for cid in (a, b, c):
        assert admin.conversation(cid)["patches"] == 1
        assert admin.conversation(cid)["open"] is False
    outcomes = Counter(r.outcome for r in batch.results())
    assert sum(outcomes.values()) == 3 and set(outcomes) <= {Outcome.CLOSED, Outcome.ALREADY_CLOSED}


def test_cancel_mid_batch(start: StartWorkers, admin: EmulatorAdmin, client: CloseClient) -> None:
    start(1, concurrency=2, genesys_rate_limit_per_minute=900)
    ids = admin.create(150)
    batch = client.close_many(ids)
    wait_until(lambda: batch.status().done >= 10)
    batch.cancel()
    status = batch.wait(timeout=120)
    assert status.done == status.total == 150 and status.state == "cancelled"
    assert status.counts.get("cancelled", 0) >= 100
    assert status.counts.get("closed", 0) + status.counts["cancelled"] == 150
    still_open = {r["id"] for r in admin.conversations(open="true")}
    cancelled = {r.conversation_id for r in batch.results() if r.outcome is Outcome.CANCELLED}
    assert cancelled == still_open


def test_interactive_work_is_served_before_bulk(start: StartWorkers, admin: EmulatorAdmin,
                                                client: CloseClient) -> None:
    start(1, concurrency=1, genesys_rate_limit_per_minute=600)
    batch = client.close_many(admin.create(60))
    wait_until(lambda: batch.status().done >= 3)
    [urgent] = admin.create(1)
    result = client.close(urgent, wait=True, timeout=30)
    assert result.outcome is Outcome.CLOSED  # type: ignore[union-attr]
    assert batch.status().done < 50


def test_batch_with_invalid_ids_records_them_and_closes_the_rest(start: StartWorkers, admin: EmulatorAdmin,
                                                                 client: CloseClient) -> None:
    start(1, concurrency=2)
    good = admin.create(5)
    batch = client.close_many([*good, "../etc/passwd", "", "nope", None, 7])
    status: BatchStatus = batch.wait(timeout=60)
    assert status.total == 10 and status.counts == {"closed": 5, "invalid_id": 5}
    assert admin.stats()["requests_by_route"].get("GET /api/v2/conversations/messages/{conversationId}") == 10
