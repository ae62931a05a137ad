"""Batches fed, not flooded (``shared.feeder``): against a real Redis, with a recording double for Celery's
publishing. Outcomes are recorded as a worker records them (``OutcomeStore.record`` then ``refill``)."""

from __future__ import annotations

import contextlib
import time
import uuid
from collections.abc import Iterator
from dataclasses import dataclass, field
from typing import Any

import pytest
import redis

from genesys_closer.config import load_worker_settings
from genesys_closer.config.redis_keys import KEYS
from genesys_closer.shared.batches import BatchWriter
from genesys_closer.shared.feeder import pace_in_flight
from genesys_closer.shared.names import FEED_TASK_NAME, QUEUE_BULK, TASK_NAME
from genesys_closer.shared.options import CloseOptions
from genesys_closer.shared.outcomes import CloseResult, Outcome
from genesys_closer.shared.stores import ResultStores
from genesys_closer.worker.genesys.errors import ServerError
from genesys_closer.worker.recovery.broker_scan import HeldClose
from genesys_closer.worker.recovery.redrive import Recovery
from genesys_closer.worker.running.breaker import CircuitBreaker
from genesys_closer.worker.running.close_run import CloseRunner, RetryLater, TaskContext
from tests.worker.test_service_parts import ScriptedCloser

BOUND = 50


@dataclass
class RecordingApp:
    """The Celery calls BatchWriter makes: close tasks (their conversation ids) and feed tasks, in order."""

    sent: list[str] = field(default_factory=list)
    feed_tasks: int = 0
    broken: bool = False  # the broker refuses (a worker killed between feeding and publishing loses them likewise)

    @contextlib.contextmanager
    def producer_or_acquire(self) -> Iterator[None]:
        yield None

    def send_task(self, name: str, args: list[Any] | None = None, kwargs: dict[str, Any] | None = None,
                  queue: str = "", producer: Any = None, ignore_result: bool = False) -> Any:
        if self.broken:
            raise ConnectionError("broker unreachable")
        if name == FEED_TASK_NAME:
            self.feed_tasks += 1
        else:
            assert name == TASK_NAME and args is not None and kwargs is not None and "batch_id" in kwargs
            self.sent.append(args[0])
        return type("Sent", (), {"id": f"task-{len(self.sent)}"})()


class Clock:
    def __init__(self) -> None:
        self.now = time.time()

    def __call__(self) -> float:
        return self.now


@pytest.fixture
def clock() -> Clock:
    return Clock()


@pytest.fixture
def results(redis_client: redis.Redis, clock: Clock) -> ResultStores:
    return ResultStores.open(redis_client, 3600, clock=clock)


@pytest.fixture
def app() -> RecordingApp:
    return RecordingApp()


@pytest.fixture
def writer(app: RecordingApp, results: ResultStores, clock: Clock) -> BatchWriter:
    return BatchWriter(app, results, clock, in_flight=BOUND)  # type: ignore[arg-type]


def _ids(count: int) -> list[str]:
    return [str(uuid.uuid4()) for _ in range(count)]


def _end(writer: BatchWriter, batch_id: str, cid: str, outcome: Outcome = Outcome.CLOSED, *,
         refill: bool = True) -> bool:
    """What a worker does when an item ends: record its outcome, then refill (a killed worker may not refill)."""
    now = time.time()
    result = CloseResult(cid, outcome, started_at=now, finished_at=now, batch_id=batch_id)
    counted = writer.results.outcomes.record(result)
    if refill:
        writer.feeder.refill(batch_id, [cid])
    return counted


def test_a_batch_is_fed_within_its_bound_in_input_order(writer: BatchWriter, app: RecordingApp,
                                                        redis_client: redis.Redis) -> None:
    ids = _ids(400)
    batch_id = writer.start(ids + ids[:10], options={})  # duplicates dropped before the feed
    assert app.sent == ids[:BOUND]
    assert redis_client.zcard(KEYS.batch_in_flight(batch_id)) == BOUND
    for cid in ids[:10]:
        _end(writer, batch_id, cid)
    assert app.sent == ids[:BOUND + 10]  # one ended, one fed
    # a retry or a batched check's wait has no outcome: nothing is fed for it
    writer.feeder.refill(batch_id, [ids[20]])
    assert len(app.sent) == BOUND + 10 and redis_client.zcard(KEYS.batch_in_flight(batch_id)) == BOUND
    for cid in list(app.sent[10:]):
        _end(writer, batch_id, cid)
    while len(app.sent) < len(ids):
        for cid in app.sent[-BOUND:]:
            _end(writer, batch_id, cid)
    for cid in app.sent[-BOUND:]:
        _end(writer, batch_id, cid)
    status = writer.results.batches.status(batch_id)
    assert status is not None and status.finished and status.done == status.total == 400
    assert status.duplicates == 10
    assert app.sent == ids  # each item published once
    assert redis_client.exists(KEYS.batch_feed(batch_id), KEYS.batch_in_flight(batch_id)) == 0  # nothing kept
    assert writer.feeder.advance_all() == {batch_id: 0}
    assert redis_client.smembers(KEYS.feeding) == set()  # a finished batch is no longer served
    assert writer.feeder.advance_all() == {}


def test_a_worker_feeds_an_org_no_faster_than_its_limiter_takes(app: RecordingApp, results: ResultStores,
                                                                 clock: Clock) -> None:
    """The producer feeds a new batch up to its bound; a worker's feeder, paced to its org's rate, refills only
    while fewer than its pace are in flight (the rest would wait in the limiter's line), and every item is still
    fed exactly once."""
    producer = BatchWriter(app, results, clock, in_flight=BOUND)  # type: ignore[arg-type]
    pace = pace_in_flight(60)  # an org at 60 requests/min: 20 s of it is 20 items
    worker = BatchWriter(app, results, clock, in_flight=BOUND, pace_in_flight=pace)  # type: ignore[arg-type]
    assert pace == 20 and pace_in_flight(300) == 100 and pace_in_flight(60_000) == 20_000
    ids = _ids(120)
    batch_id = producer.start(ids, options={})
    assert app.sent == ids[:BOUND]
    for cid in ids[:BOUND - pace]:
        _end(worker, batch_id, cid)
    assert app.sent == ids[:BOUND]  # still more than the pace in flight: nothing fed
    _end(worker, batch_id, ids[BOUND - pace])
    assert app.sent == ids[:BOUND + 1]  # one below the pace: one ended, one fed
    while len(app.sent) < len(ids) or results.batches.status(batch_id).done < len(ids):  # type: ignore[union-attr]
        for cid in app.sent[-pace:]:
            _end(worker, batch_id, cid)
    assert app.sent == ids  # each fed once


def test_a_cancel_feeds_nothing_more_and_every_item_ends_once(writer: BatchWriter, app: RecordingApp) -> None:
    ids = _ids(3000)
    batch_id = writer.start(ids, options={})
    for cid in ids[:5]:
        _end(writer, batch_id, cid)
    writer.results.batches.cancel(batch_id, "cancelled by operator")
    writer.feeder.kick()  # what Batch.cancel does
    assert app.feed_tasks == 1
    published = len(app.sent)
    _end(writer, batch_id, ids[5], Outcome.CANCELLED)  # an in-flight item ends (its task saw the cancel)
    assert len(app.sent) == published  # nothing more fed
    done = writer.feeder.advance_all()  # the feed task
    assert done == {batch_id: 3000 - published}
    assert writer.feeder.advance_all() == {batch_id: 0}  # once
    for cid in app.sent[6:]:  # the rest of what was in flight ends cancelled
        _end(writer, batch_id, cid, Outcome.CANCELLED)
    status = writer.results.batches.status(batch_id)
    assert status is not None and status.finished and status.state == "cancelled"
    assert status.done == status.total == 3000 and status.counts == {"closed": 5, "cancelled": 2995}
    assert {r.conversation_id for r in writer.results.batches.items(batch_id)} == set(ids)
    never_fed = writer.results.outcomes.latest(ids[-1])
    assert never_fed is not None and never_fed.outcome is Outcome.CANCELLED and never_fed.attempts == 0
    assert len(app.sent) == published


def test_the_remainder_of_a_stopped_batch_is_not_attempted(writer: BatchWriter, app: RecordingApp) -> None:
    ids = _ids(200)
    batch_id = writer.start(ids, options={})
    writer.results.batches.stop(batch_id, "the OAuth client lacks conversation:communication:disconnect")
    _end(writer, batch_id, ids[0], Outcome.NOT_ATTEMPTED)
    assert app.feed_tasks == 1  # the item that saw the stop sent the feed task
    writer.feeder.advance_all()
    for cid in app.sent[1:]:
        _end(writer, batch_id, cid, Outcome.NOT_ATTEMPTED)
    status = writer.results.batches.status(batch_id)
    assert status is not None and status.finished and status.counts == {"not_attempted": 200}
    record = writer.results.outcomes.latest(ids[-1])
    assert record is not None and "conversation:communication:disconnect" in (record.error or "")


def test_two_feeders_racing_over_an_ended_batch_count_each_item_once(writer: BatchWriter, app: RecordingApp,
                                                                     results: ResultStores) -> None:
    ids = _ids(1200)
    batch_id = writer.start(ids, options={})
    results.batches.cancel(batch_id, "cancelled by operator")
    other = BatchWriter(app, results, time.time, in_flight=BOUND).feeder  # type: ignore[arg-type]
    # both record the same chunk first (as two drains that read the same cursor would), then each goes on
    cids = ids[BOUND:BOUND + 500]
    now = time.time()
    records = [CloseResult(cid, Outcome.CANCELLED, started_at=now, finished_at=now, batch_id=batch_id) for cid in cids]
    assert results.outcomes.record_many(records) == 500 and results.outcomes.record_many(records) == 0
    other.advance(batch_id, time.monotonic() + 30)
    writer.feeder.advance(batch_id, time.monotonic() + 30)
    status = results.batches.status(batch_id)
    assert status is not None and status.done == 1200 - BOUND and status.counts == {"cancelled": 1200 - BOUND}


def test_a_refill_lost_with_a_killed_worker_is_made_by_the_recovery(writer: BatchWriter, app: RecordingApp,
                                                                    redis_client: redis.Redis) -> None:
    ids = _ids(300)
    batch_id = writer.start(ids, options={})
    for cid in ids[:20]:
        _end(writer, batch_id, cid, refill=False)  # outcome recorded, then the worker died
    assert len(app.sent) == BOUND
    report = Recovery(redis_client, writer.results, writer, stall_seconds=300, held=lambda _: set()).run()
    assert report.fed == 20 and app.sent == ids[:BOUND + 20]
    assert redis_client.zcard(KEYS.batch_in_flight(batch_id)) == BOUND


def test_items_fed_but_never_published_are_re_sent_when_the_batch_stalls(writer: BatchWriter, app: RecordingApp,
                                                                         redis_client: redis.Redis,
                                                                         clock: Clock) -> None:
    ids = _ids(500)
    batch_id = writer.start(ids, options={})
    _end(writer, batch_id, ids[0])
    app.broken = True  # these items are fed (in flight) but their messages never reach the broker
    with pytest.raises(ConnectionError):
        _end(writer, batch_id, ids[1])
    app.broken = False
    assert len(app.sent) == BOUND + 1
    clock.now += 301
    held = [HeldClose(f"t-{cid}", cid, batch_id) for cid in ids[2:BOUND + 1]]  # what the broker holds
    report = Recovery(redis_client, writer.results, writer, stall_seconds=300, held=lambda _: held).run()
    # re-sent: the one fed item the broker lost; nothing beyond the bound, nothing from the feed's remainder
    assert report.batches == {batch_id: 1} and app.sent[-1] == ids[BOUND + 1]
    assert redis_client.zcard(KEYS.batch_in_flight(batch_id)) == BOUND



def test_a_close_that_ends_feeds_the_next_item_and_one_deferred_does_not(writer: BatchWriter, app: RecordingApp,
                                                                         redis_client: redis.Redis) -> None:
    closer = ScriptedCloser(steps=[("patch", Outcome.CLOSED), ("get", ServerError("boom", 503)),
                                   ("get", Outcome.ALREADY_CLOSED)])
    settings = load_worker_settings(task_retry_window_seconds=600, task_max_retries=50)
    close_runner = CloseRunner(settings, redis_client, closer, CloseOptions(), writer.results,  # type: ignore[arg-type]
                               CircuitBreaker(redis_client, "bucket", threshold=2, open_seconds=60),
                               feeder=writer.feeder)
    ids = _ids(BOUND + 5)
    batch_id = writer.start(ids, options={})
    context = TaskContext("t1", 0, batch_id, queue=QUEUE_BULK)
    assert close_runner.run(ids[0], context, {})["outcome"] == "closed"
    assert app.sent == ids[:BOUND + 1]  # its outcome fed the next item
    with pytest.raises(RetryLater):
        close_runner.run(ids[1], TaskContext("t2", 0, batch_id, queue=QUEUE_BULK), {})
    assert app.sent == ids[:BOUND + 1]  # a deferred item keeps its slot
    assert close_runner.run(ids[1], TaskContext("t2", 1, batch_id, queue=QUEUE_BULK), {})["outcome"] == \
        "already_closed"
    assert app.sent == ids[:BOUND + 2]


def test_a_feed_pass_out_of_budget_or_asked_for_while_busy_sends_the_next(writer: BatchWriter, app: RecordingApp,
                                                                            results: ResultStores) -> None:
    ids = _ids(3000)
    batch_id = writer.start(ids, options={})
    results.batches.cancel(batch_id, "cancelled by operator")
    assert writer.feeder.advance_all(budget_seconds=0) == {} and app.feed_tasks == 1  # nothing done: go on
    writer.feeder.redis.delete(KEYS.feeder("kick"))
    other = BatchWriter(app, results, time.time, in_flight=BOUND).feeder  # type: ignore[arg-type]
    advance = writer.feeder.advance

    def advance_while_another_run_comes(batch: str, deadline: float) -> int:
        assert other.advance_all() == {}  # this pass holds the lock (and may be past that run's batch)
        return advance(batch, deadline)

    writer.feeder.advance = advance_while_another_run_comes  # type: ignore[method-assign]
    assert writer.feeder.advance_all() == {batch_id: 3000 - BOUND}
    assert app.feed_tasks == 2  # the run that came meanwhile gets a pass of its own
    writer.feeder.advance = advance  # type: ignore[method-assign]
    assert writer.feeder.advance_all() == {batch_id: 0} and app.feed_tasks == 2
