"""A batch whose builder dies mid-enqueue (``shared.enqueue_lease``): against a real Redis, with a recording double
for Celery's publishing. The builder really dies (a forked process that ``os._exit``s); an expired lease is a
deleted key, which is what its expiry does."""

from __future__ import annotations

import contextlib
import multiprocessing
import os
import time
import uuid
from collections.abc import Iterator
from dataclasses import dataclass, field
from typing import Any

import redis

from genesys_closer.config.redis_keys import KEYS
from genesys_closer.shared.batches import IN_FLIGHT, BatchWriter
from genesys_closer.shared.enqueue_lease import EnqueueLease
from genesys_closer.shared.redis_connection import connect
from genesys_closer.shared.stores import ResultStores
from genesys_closer.worker.recovery.redrive import Recovery


@dataclass
class RecordingApp:
    """The Celery calls BatchWriter makes, recorded (conversation id of each close published)."""

    sent: list[str] = field(default_factory=list)

    @contextlib.contextmanager
    def producer_or_acquire(self) -> Iterator[None]:
        yield None

    def send_task(self, name: str, args: list[Any], kwargs: dict[str, Any], queue: str, producer: Any = None,
                  ignore_result: bool = False) -> Any:
        self.sent.append(args[0])
        return type("Sent", (), {"id": f"task-{len(self.sent)}"})()


def _ids(count: int) -> list[str]:
    return [str(uuid.uuid4()) for _ in range(count)]


def _recovery(client: redis.Redis, app: RecordingApp) -> Recovery:
    results = ResultStores.open(client, 3600)
    return Recovery(client, results, BatchWriter(app, results, time.time), stall_seconds=300,  # type: ignore[arg-type]
                    held=lambda _: set())


def _expire_lease(client: redis.Redis, batch_id: str) -> None:
    client.delete(KEYS.batch_enqueuer(batch_id))


def test_a_staged_batch_whose_publisher_died_is_published_by_the_recovery(redis_client: redis.Redis) -> None:
    results = ResultStores.open(redis_client, 3600)
    builder_app = RecordingApp()
    ids = _ids(1200)
    staged = BatchWriter(builder_app, results, time.time).stage(ids, options={})  # type: ignore[arg-type]
    assert results.batches.status(staged.batch_id).total == 1200  # type: ignore[union-attr]
    assert results.batches.status(staged.batch_id).state == "enqueuing"  # type: ignore[union-attr]
    recovery_app = RecordingApp()
    assert _recovery(redis_client, recovery_app).run().resumed == {}  # its builder holds the lease: left alone
    _expire_lease(redis_client, staged.batch_id)  # the builder died before publishing (no release)
    report = _recovery(redis_client, recovery_app).run()
    # marked enqueued and fed: its first BATCH_IN_FLIGHT items go to the broker, the rest wait in its feed
    assert report.resumed == {staged.batch_id: IN_FLIGHT} and recovery_app.sent == ids[:IN_FLIGHT]
    assert redis_client.zcard(KEYS.batch_in_flight(staged.batch_id)) == IN_FLIGHT
    assert results.batches.status(staged.batch_id).state == "running"  # type: ignore[union-attr]
    assert results.batches.enqueuing() == []
    assert _recovery(redis_client, recovery_app).run().resumed == {}  # once


def test_a_publisher_that_lost_its_lease_stops(redis_client: redis.Redis) -> None:
    results = ResultStores.open(redis_client, 3600)
    app = RecordingApp()
    writer = BatchWriter(app, results, time.time, lease_seconds=3)
    staged = writer.stage(_ids(2000), options={})
    staged.lease.keep = lambda: False  # type: ignore[method-assign]  # taken over while this process stalled
    assert writer.publish_staged(staged) == 0
    assert results.batches.status(staged.batch_id).state == "enqueuing"  # type: ignore[union-attr]  # not its call
    assert redis_client.exists(KEYS.batch_enqueuer(staged.batch_id)) == 0  # released: the recovery takes it


def _die_while_storing(redis_url: str, batch_id: str, valid: list[str]) -> None:
    client = connect(redis_url)

    def ids() -> Iterator[str]:
        yield from valid
        os._exit(9)  # SIGKILL-like: no cleanup runs

    BatchWriter(RecordingApp(), ResultStores.open(client, 3600), time.time).stage(  # type: ignore[arg-type]
        ids(), options={}, batch_id=batch_id)


def test_a_batch_whose_builder_died_while_storing_is_discarded(redis_url: str, redis_client: redis.Redis) -> None:
    batch_id = uuid.uuid4().hex
    child = multiprocessing.get_context("fork").Process(target=_die_while_storing,
                                                         args=(redis_url, batch_id, _ids(2500)))
    child.start()
    child.join(30)
    assert child.exitcode == 9
    results = ResultStores.open(redis_client, 3600)
    assert results.batches.status(batch_id).total is None  # type: ignore[union-attr]  # half stored
    assert redis_client.scard(KEYS.batch_members(batch_id)) >= 2000
    _expire_lease(redis_client, batch_id)
    app = RecordingApp()
    report = _recovery(redis_client, app).run()
    assert report.discarded == [batch_id] and app.sent == []  # its caller never got the id: nothing runs
    assert results.batches.status(batch_id) is None and results.batches.enqueuing() == []
    assert redis_client.exists(KEYS.batch_members(batch_id), KEYS.batch_feed(batch_id)) == 0


def test_the_lease_is_extended_only_every_third_of_its_ttl(redis_client: redis.Redis) -> None:
    now = [0.0]
    lease = EnqueueLease(redis_client, uuid.uuid4().hex, 30, clock=lambda: now[0])
    assert lease.take() and not EnqueueLease(redis_client, lease.batch_id, 30).take()  # held: nobody else
    redis_client.pexpire(KEYS.batch_enqueuer(lease.batch_id), 5000)
    now[0] = 9.9
    assert lease.keep() and redis_client.pttl(KEYS.batch_enqueuer(lease.batch_id)) <= 5000  # too soon: no call
    now[0] = 10.0
    assert lease.keep() and redis_client.pttl(KEYS.batch_enqueuer(lease.batch_id)) > 25_000
    redis_client.delete(KEYS.batch_enqueuer(lease.batch_id))
    now[0] = 20.0
    assert not lease.keep()  # expired: its holder must stop
