"""The recovery lock across Redis restarts (``worker/recovery/redrive.py``, "The recovery lock"), and the feed
pass's (``shared/feeder.py``): a real redis-server (AOF, SIGTERM, same port and data), restarted with the lock held,
as when a pass was running as Redis stopped; in-process doubles for Celery and the broker scan."""

from __future__ import annotations

import pytest
import redis

from genesys_closer.config.redis_keys import KEYS
from genesys_closer.shared.batches import BatchWriter
from genesys_closer.shared.feeder import LOCK_SECONDS as FEED_LOCK_SECONDS
from genesys_closer.shared.locks import OwnedLock, redis_run_id, run_of
from genesys_closer.shared.redis_connection import connect
from genesys_closer.shared.stores import ResultStores
from genesys_closer.worker.recovery.broker_scan import HeldClose
from genesys_closer.worker.recovery.redrive import LOCK_SECONDS, Recovery, remember_redis_run_id
from tests.services import RedisServer
from tests.worker.test_service_parts import CID, OTHER, Clock, FakeApp

SINGLE = "00000000-0000-4000-8000-000000000009"


@pytest.fixture
def server(private_redis: RedisServer) -> RedisServer:
    """Its own Redis (tests/conftest.py): these tests restart it."""
    return private_redis


@pytest.fixture
def client(server: RedisServer) -> redis.Redis:
    return connect(server.url)


@pytest.fixture
def results(client: redis.Redis) -> ResultStores:
    return ResultStores.open(client, 3600, clock=Clock())


@pytest.fixture
def app() -> FakeApp:
    return FakeApp()


@pytest.fixture
def writer(app: FakeApp, results: ResultStores) -> BatchWriter:
    return BatchWriter(app, results, results.clock)  # type: ignore[arg-type]


def recovery(client: redis.Redis, results: ResultStores, writer: BatchWriter,
             held: set[HeldClose] | None = None) -> Recovery:
    return Recovery(client, results, writer, stall_seconds=300, held=lambda _: set(held or ()))


def a_check_holds_the_lock(client: redis.Redis) -> OwnedLock:
    """The lock as a recovery check running at this moment holds it."""
    lock = OwnedLock(client, KEYS.redrive_lock, LOCK_SECONDS)
    assert lock.acquire_in_run(redis_run_id(client))
    return lock


def restart(server: RedisServer, client: redis.Redis, *, lock_held: bool = True) -> None:
    before = redis_run_id(client)
    server.restart()
    assert redis_run_id(client) != before
    if lock_held:  # kept in the AOF, with its expiry: nobody will release it
        assert client.get(KEYS.redrive_lock) is not None


def test_a_lock_taken_before_a_redis_restart_is_taken_over_by_the_next_check(
        server: RedisServer, client: redis.Redis, results: ResultStores, writer: BatchWriter, app: FakeApp) -> None:
    batch_id = writer.start([CID, OTHER], options={})
    results.pending.track("single-1", SINGLE, {}, "interactive")
    app.sent.clear()
    remember_redis_run_id(client)
    cut_off = a_check_holds_the_lock(client)
    restart(server, client)
    report = recovery(client, results, writer).run()
    assert report.redis_restarted and report.batches == {batch_id: 2} and report.standalone == 1
    assert sorted(task[1][0] for task in app.sent) == sorted([CID, OTHER, SINGLE])
    assert client.get(KEYS.redrive_lock) is None  # released at the end of the pass
    assert not cut_off.release()  # the cut-off check no longer owns it
    assert not recovery(client, results, writer).run().redis_restarted  # the restart is handled


@pytest.mark.parametrize("token", ["current run", "no run named"])
def test_a_lock_taken_under_the_current_run_is_respected(client: redis.Redis, results: ResultStores,
                                                         writer: BatchWriter, app: FakeApp, token: str) -> None:
    batch_id = writer.start([CID], options={})
    app.sent.clear()
    client.set(KEYS.redis_run_id, "the-run-before-the-restart")
    running = OwnedLock(client, KEYS.redrive_lock, LOCK_SECONDS)
    if token == "current run":
        running = a_check_holds_the_lock(client)
    else:  # a token written before tokens named their run (or by another kind of holder)
        assert running.acquire("another-worker")
    holder = running.owner()
    assert recovery(client, results, writer).run().batches == {}
    assert running.owner() == holder and app.sent == []
    running.release()
    assert recovery(client, results, writer).run().batches == {batch_id: 1}


def test_a_check_that_lost_its_lock_stops_at_its_next_step(server: RedisServer, client: redis.Redis,
                                                           results: ResultStores, writer: BatchWriter,
                                                           app: FakeApp) -> None:
    """A check is past its broker scan when Redis restarts; the next check takes the lock over and re-sends what was
    lost; the first one reconnects and finds, before its next step, that the lock is no longer its own."""
    batch_id = writer.start([CID, OTHER], options={})
    results.pending.track("single-1", SINGLE, {}, "interactive")
    app.sent.clear()
    results.clock.now += 1000  # type: ignore[attr-defined]  # stalled: the first check has work to do
    remember_redis_run_id(client)
    newer: list[dict[str, object]] = []

    def scan_then_restart(_: redis.Redis) -> set[HeldClose]:
        restart(server, client)
        newer.append(recovery(client, results, writer).run().as_dict())
        return set()

    first = Recovery(client, results, writer, stall_seconds=300, held=scan_then_restart).run()
    assert newer[0]["redis_restarted"] and newer[0]["batches"] == {batch_id: 2} and newer[0]["standalone"] == 1
    assert first.lost_lock and first.batches == {} and first.standalone == 0
    assert sorted(task[1][0] for task in app.sent) == sorted([CID, OTHER, SINGLE])  # each sent once, by the newer


def test_a_check_that_fails_after_seeing_a_restart_leaves_it_to_the_next(
        server: RedisServer, client: redis.Redis, results: ResultStores, writer: BatchWriter, app: FakeApp) -> None:
    batch_id = writer.start([CID], options={})
    app.sent.clear()
    remember_redis_run_id(client)
    restart(server, client, lock_held=False)

    def scan_fails(_: redis.Redis) -> set[HeldClose]:
        raise redis.ConnectionError("Redis went away again")

    with pytest.raises(redis.ConnectionError):
        Recovery(client, results, writer, stall_seconds=300, held=scan_fails).run()
    assert app.sent == []
    report = recovery(client, results, writer).run()
    assert report.redis_restarted and report.batches == {batch_id: 1}


def test_a_feed_pass_takes_over_a_feed_lock_from_before_a_restart(server: RedisServer, client: redis.Redis,
                                                                   writer: BatchWriter) -> None:
    batch_id = writer.start([CID, OTHER], options={})
    cut_off = OwnedLock(client, KEYS.feeder("lock"), FEED_LOCK_SECONDS)
    assert cut_off.acquire_in_run(redis_run_id(client))
    assert writer.feeder.advance_all() == {}  # a feed pass is running (its batches are advanced by it)
    restart(server, client, lock_held=False)
    assert client.get(KEYS.feeder("lock")) is not None
    assert batch_id in writer.feeder.advance_all()
    assert not cut_off.extend()  # the cut-off pass stops before its next batch


def test_lock_tokens_name_their_run(client: redis.Redis) -> None:
    lock = a_check_holds_the_lock(client)
    assert run_of(lock.owner() or "") == redis_run_id(client) != ""
    assert run_of("3f0c2b9e5a7d4e1f8a6b0c9d2e4f6a8b") == ""  # a token from before: no run named
