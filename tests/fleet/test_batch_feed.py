"""A batch larger than its in-flight bound, on the shared fleet: it is fed as its items end, never holds more than
its bound in flight or in the broker, and every item ends once (``shared.feeder``). Five times the bound: four
fifths of the items are fed by refills (each refill round waits on a close; more rounds prove nothing more)."""

from __future__ import annotations

import threading

import redis

from genesys_closer.config import ProducerSettings
from genesys_closer.config.redis_keys import KEYS
from genesys_closer.emulator.admin import EmulatorAdmin
from genesys_closer.producer.api import CloseClient
from genesys_closer.worker.recovery.broker_scan import held_closes

BOUND = 20
ITEMS = 100


def test_a_batch_is_fed_within_its_bound_and_every_item_ends_once(
        admin: EmulatorAdmin, producer_settings: ProducerSettings, redis_client: redis.Redis) -> None:
    client = CloseClient(producer_settings.model_copy(update={"batch_in_flight": BOUND}))
    ids = admin.create(ITEMS)
    batch = client.close_many(ids, label="fed")
    peaks = {"in_flight": 0, "messages": 0}
    stop = threading.Event()

    def watch() -> None:  # samples while the batch runs: the bound must hold at every sample
        while not stop.is_set():
            peaks["in_flight"] = max(peaks["in_flight"], int(redis_client.zcard(KEYS.batch_in_flight(batch.id))))
            # Tasks, not raw messages: a retry (a hand-back at the limiter, too) publishes its copy, with the same
            # task id, just before the broker lets the first go, so one item may briefly be two messages.
            held = len({h.task_id for h in held_closes(redis_client) if h.batch_id == batch.id})
            peaks["messages"] = max(peaks["messages"], held)
            stop.wait(0.05)

    watcher = threading.Thread(target=watch, daemon=True)
    watcher.start()
    try:
        status = batch.wait(timeout=180)
    finally:
        stop.set()
        watcher.join(10)
    print(f"\npeak in flight {peaks['in_flight']}, peak broker messages {peaks['messages']} (bound {BOUND})")
    assert status.done == status.total == ITEMS and set(status.counts) <= {"closed", "already_closed"}
    assert peaks["in_flight"] <= BOUND and peaks["messages"] <= BOUND
    assert admin.stats()["conversations_open"] == 0
    assert admin.stats()["duplicate_conversation_patches"] == 0
    assert redis_client.exists(KEYS.batch_feed(batch.id), KEYS.batch_in_flight(batch.id)) == 0
