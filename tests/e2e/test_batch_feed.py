"""Fed batches (issue 21 §3) through the real pieces: a 100,000-item batch that waits (the producer on a Redis no
worker consumes yet, then a real worker), and a fed batch through a SIGKILL and a Redis restart (chaos). How long
``close_many`` takes is bench/batch_feed.py's to measure, not this test's."""

from __future__ import annotations

import uuid
from pathlib import Path

import pytest
import redis

from genesys_closer.config import ProducerSettings
from genesys_closer.config.redis_keys import KEYS
from genesys_closer.emulator import EmulatorServer
from genesys_closer.emulator.admin import EmulatorAdmin
from genesys_closer.producer.api import CloseClient
from genesys_closer.worker.recovery.broker_scan import held_closes
from tests.chaos.test_chaos import SCALED, lost_items, report
from tests.e2e.conftest import StartWorkers
from tests.services import BeatProcess, RedisServer, worker_env
from tests.waiting import wait_until

pytestmark = pytest.mark.slow

ITEMS = 100_000
MAX_REDIS_BYTES = 30 * 1024 * 1024


def _held(raw: redis.Redis, batch_id: str) -> int:
    """Close tasks of the batch the broker holds (a retry's copy has its task's id: one task, not two)."""
    return len({held.task_id for held in held_closes(raw) if held.batch_id == batch_id})


def test_a_waiting_batch_holds_few_messages_and_little_memory_and_cancels_at_once(
        start: StartWorkers, client: CloseClient, redis_url: str, admin: EmulatorAdmin) -> None:
    raw = redis.Redis.from_url(redis_url)
    before = int(raw.info("memory")["used_memory"])
    batch = client.close_many(str(uuid.uuid4()) for _ in range(ITEMS))
    grown = int(raw.info("memory")["used_memory"]) - before
    messages = _held(raw, batch.id)
    print(f"\nFEED | a waiting {ITEMS:,}-item batch: {grown / 1e6:.1f} MB of Redis, {messages} broker messages")
    assert batch.status().total == ITEMS
    assert messages == client.settings.batch_in_flight  # the rest waits in the batch's feed
    assert grown <= MAX_REDIS_BYTES

    batch.cancel()
    assert _held(raw, batch.id) == messages  # nothing more is published
    start(1, concurrency=2)  # the fed items end cancelled as their tasks run; the feed task records the rest
    status = batch.wait(timeout=300)
    assert status.state == "cancelled" and status.done == status.total == ITEMS
    assert status.counts == {"cancelled": ITEMS}  # each item counted once
    assert _held(raw, batch.id) == 0
    assert not [r for r in admin.requests() if r["route"] != "/oauth/token"]  # nothing ran against Genesys


def test_a_fed_batch_loses_nothing_through_a_sigkill_and_a_redis_restart(
        start: StartWorkers, admin: EmulatorAdmin, producer_settings: ProducerSettings, redis_server: RedisServer,
        redis_url: str, emulator: EmulatorServer, logdir: Path) -> None:
    """A small bound (40) so that most of the 300 items are fed by refills: a worker is SIGKILLed while the batch is
    fed (between an outcome and its refill, or between feeding and publishing, wherever it lands), then Redis
    restarts (SIGTERM, AOF). Beat runs, as in production, with the chaos tests' scaled recovery windows. Every
    item ends once, the feed's cursor and in-flight set come back with Redis and nothing stays in flight."""
    admin.faults(rate_limit_per_minute=100_000)
    first, _ = start(2, concurrency=4, genesys_rate_limit_per_minute=6000, **SCALED)
    beat = BeatProcess(worker_env(redis_url, emulator.base_url, **SCALED), logdir).start()
    client = CloseClient(producer_settings.model_copy(update={"batch_in_flight": 40}))
    raw = redis.Redis.from_url(redis_url)
    try:
        ids = admin.create(300)
        batch = client.close_many(ids, label="fed-chaos")
        wait_until(lambda: batch.status().done >= 75, timeout=120)
        first.kill()
        first.start().wait_ready()
        wait_until(lambda: batch.status().done >= 175, timeout=180)  # fed on: 85 or more still in the feed
        redis_server.restart()
        status = batch.wait(timeout=240)
    finally:
        beat.stop()
    assert status.done == status.total == 300
    assert set(status.counts) <= {"closed", "already_closed"}
    assert admin.stats()["conversations_open"] == 0
    assert lost_items(batch, admin, ids) == 0
    assert raw.exists(KEYS.batch_feed(batch.id), KEYS.batch_in_flight(batch.id)) == 0
    redriven = int(client.results.batches.fields(batch.id, "redriven")[0] or 0)
    report("SIGKILL a worker and restart Redis while a batch is fed (bound 40)", "300 conversations, 2 workers x 4",
           "1 x SIGKILL, then redis-server SIGTERM + start", 0, admin.stats()["duplicate_conversation_patches"],
           f"every item ended once; {redriven} in-flight item(s) re-sent")
