"""A 100,000-item batch that waits (issue 21 §3), through the real pieces: the producer on a Redis no worker consumes
yet, then a real worker. How long ``close_many`` takes is bench/batch_feed.py's to measure, not this test's."""

from __future__ import annotations

import uuid

import pytest
import redis

from genesys_closer.emulator.admin import EmulatorAdmin
from genesys_closer.producer.api import CloseClient
from genesys_closer.worker.broker_scan import held_closes
from tests.e2e.conftest import StartWorkers

pytestmark = pytest.mark.slow

ITEMS = 100_000
MAX_REDIS_BYTES = 30 * 1024 * 1024


def _held(raw: redis.Redis, batch_id: str) -> int:
    return sum(1 for held in held_closes(raw) if held.batch_id == batch_id)


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
