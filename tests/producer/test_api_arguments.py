"""Every option of the Python API is checked before anything is written or sent: a wrong value raises a ValueError
naming what is valid, never a batch whose ``done`` cannot reach its ``total`` (a ``wait()`` that hangs). A batch id in
use is refused, atomically, and the batch that has it is left as it was. Real Redis, no worker: nothing here runs."""

from __future__ import annotations

import itertools
import math
import threading
import time
import uuid
from collections.abc import Callable
from concurrent.futures import ThreadPoolExecutor
from typing import Any

import pytest
import redis

from genesys_closer.config import load_producer_settings
from genesys_closer.config.settings import get_producer_settings
from genesys_closer.producer.api import (
    Batch,
    BatchIdInUse,
    BatchNotFound,
    CloseClient,
    InvalidArgument,
    close_conversation,
    default_client,
)
from genesys_closer.shared.names import QUEUES
from genesys_closer.shared.outcomes import CloseResult, Outcome
from genesys_closer.shared.stores.batch_state import BatchState

CID = "3b47a74f-a827-4166-ae62-f6ba6d7268ae"
OTHER = "00000000-0000-4000-8000-000000000001"


@pytest.fixture
def client(redis_url: str) -> CloseClient:
    return CloseClient(load_producer_settings(redis_url=redis_url))


@pytest.fixture
def raw(redis_url: str) -> redis.Redis:
    return redis.Redis.from_url(redis_url)


def queued(raw: redis.Redis, queue: str) -> int:
    """Messages waiting in ``queue``, its priority steps included (kombu: lists named queue + "\x06\x16" + step)."""
    return int(raw.llen(queue)) + sum(int(raw.llen(step)) for step in raw.scan_iter(f"{queue}\x06\x16*"))


def written(raw: redis.Redis) -> dict[str, Any]:
    """What the producer left in Redis: our keys and every queued message."""
    return {"keys": sorted(raw.scan_iter("genesys-closer:*")),
            "queued": {queue: queued(raw, queue) for queue in QUEUES if queued(raw, queue)}}


NOTHING: dict[str, Any] = {"keys": [], "queued": {}}


@pytest.mark.parametrize("value", ["skip", "", None, 123, "RECORD", "abort "])
def test_close_many_refuses_an_unknown_on_invalid(client: CloseClient, raw: redis.Redis, value: object) -> None:
    with pytest.raises(ValueError, match=r"on_invalid must be one of 'record', 'abort'"):
        client.close_many([CID, "not-an-id"], on_invalid=value)  # type: ignore[arg-type]
    assert written(raw) == NOTHING


# (call, what the message must say); each refused before anything is written
REFUSED: list[tuple[str, Callable[[CloseClient], object], str]] = [
    ("queue", lambda c: c.close_many([CID], queue="nope"), r"queue must be one of 'interactive', 'celery', 'bulk'"),
    ("queue None", lambda c: c.close_many([CID], queue=None), r"queue must be one of"),  # type: ignore[arg-type]
    ("label", lambda c: c.close_many([CID], label=None), r"label must be a string"),  # type: ignore[arg-type]
    ("source", lambda c: c.close_many([CID], source=7), r"source must be a string"),  # type: ignore[arg-type]
    ("one string", lambda c: c.close_many(CID), r"not one string"),
    ("empty list", lambda c: c.close_many([]), r"holds no conversation id"),
    ("empty generator", lambda c: c.close_many(iter([])), r"holds no conversation id"),
    ("options type", lambda c: c.close_many([CID], options=["policy"]), r"options must be a dict"),  # type: ignore[arg-type]
    ("option name", lambda c: c.close_many([CID], options={"polcy": "fail"}), r"unknown close option"),
    ("policy", lambda c: c.close_many([CID], options={"policy": "skip"}), r"policy must be one of fail"),
    ("batch id", lambda c: c.close_many([CID], batch_id="B" * 32), r"32 lower-case hex"),
    ("batch id type", lambda c: c.close_many([CID], batch_id=32), r"32 lower-case hex"),  # type: ignore[arg-type]
    ("close wait", lambda c: c.close(CID, wait="yes"), r"wait must be True or False"),  # type: ignore[arg-type]
    ("close timeout", lambda c: c.close(CID, timeout=-1), r"timeout must be at least 0"),
    ("close timeout nan", lambda c: c.close(CID, timeout=math.nan), r"timeout must be a number of seconds"),
    ("close timeout text", lambda c: c.close(CID, timeout="60"), r"timeout must be a number"),  # type: ignore[arg-type]
    ("close option", lambda c: c.close(CID, polic="fail"), r"unknown close option"),
    ("close other types", lambda c: c.close(CID, allow_other_message_types="yes"), r"must be true or false"),
    ("countdown", lambda c: c.close(CID, countdown=-1), r"countdown must be between 0 and"),
    ("countdown text", lambda c: c.close(CID, countdown="5"), r"countdown must be between"),  # type: ignore[arg-type]
    ("send queue", lambda c: c.send_close(CID, queue="nope"), r"queue must be one of"),
    ("send option", lambda c: c.send_close(CID, expires=10), r"unknown send option\(s\) 'expires'; valid: "),
    ("priority", lambda c: c.send_close(CID, priority=10), r"priority must be a whole number from 0 to 9"),
    ("eta", lambda c: c.send_close(CID, eta=1), r"use countdown"),
    ("result id", lambda c: c.result("", timeout=1), r"task_id must be"),
    ("result timeout", lambda c: c.result("x", timeout=-2), r"timeout must be at least 0"),
    ("batches limit 0", lambda c: c.batches(0), r"limit must be a whole number from 1 to 1000"),
    ("batches limit", lambda c: c.batches(-5), r"limit must be a whole number"),
    ("batches limit bool", lambda c: c.batches(True), r"limit must be a whole number"),
    ("rejected limit", lambda c: c.rejected(5000), r"limit must be a whole number from 1 to 1000"),
    ("batch id lookup", lambda c: c.batch("../x"), r"32 lower-case hex"),
    ("sweep filters", lambda c: c.sweep("interval=1d"), r"filters must be a dict"),  # type: ignore[arg-type]
    ("sweep dry run", lambda c: c.sweep({}, dry_run="no"), r"dry_run must be True or False"),  # type: ignore[arg-type]
    ("sweep filter name", lambda c: c.sweep({"min_age": 5}), r"unknown sweep filter\(s\): min_age; valid: min_age_"),
    ("sweep filter number", lambda c: c.sweep({"min_age_minutes": "5"}), r"min_age_minutes must be a number"),
    ("sweep filter negative", lambda c: c.sweep({"idle_minutes": -1}), r"idle_minutes must be a number, at least 0"),
    ("sweep filter flag", lambda c: c.sweep({"include_parked": 1}), r"include_parked must be true or false"),
    ("sweep filter count", lambda c: c.sweep({"max_count": 0}), r"max_count must be a whole number"),
    ("sweep filter queues", lambda c: c.sweep({"queue_ids": "q"}), r"queue_ids must be a list"),
    ("sweep filter queue id", lambda c: c.sweep({"queue_ids": ["q"]}), r"queue id"),
    ("sweep filter time", lambda c: c.sweep({"started_after": "yesterday"}), r"Invalid isoformat|isoformat"),
    ("sweep filter lookback", lambda c: c.sweep({"lookback_days": 365}), r"lookback_days may be at most 90"),
    ("sweep options", lambda c: c.sweep({}, options={"policy": "x"}), r"policy must be one of"),
    ("check one string", lambda c: c.check_ids(CID), r"not one string"),
    ("outcome id", lambda c: c.outcome("../x"), r"conversation"),
]


@pytest.mark.parametrize(("name", "call", "message"), REFUSED, ids=[r[0] for r in REFUSED])
def test_every_option_is_checked_before_anything_is_written(client: CloseClient, raw: redis.Redis, name: str,
                                                            call: Callable[[CloseClient], object],
                                                            message: str) -> None:
    with pytest.raises(ValueError, match=message):
        call(client)
    assert written(raw) == NOTHING


def test_batch_handle_options_are_checked(client: CloseClient) -> None:
    batch = client.close_many([CID])
    for kwargs, message in (({"poll_seconds": 0}, r"poll_seconds must be above 0"),
                            ({"timeout": -1}, r"timeout must be at least 0"),
                            ({"progress": "print"}, r"progress must be a function or None")):
        with pytest.raises(ValueError, match=message):
            batch.wait(**kwargs)
    with pytest.raises(ValueError, match=r"32 lower-case hex"):
        Batch(client, "not a batch id")
    with pytest.raises(BatchNotFound):
        client.batch(uuid.uuid4().hex)


def test_batch_wait_reads_often_at_first_then_every_poll_seconds(client: CloseClient,
                                                                  monkeypatch: pytest.MonkeyPatch) -> None:
    """A small batch is seen finished soon after its last outcome; a long one is read once per ``poll_seconds``."""
    from genesys_closer.producer import api

    batch = client.close_many([CID])  # no worker here: it never finishes
    waits: list[float] = []

    class Enough(Exception):
        pass

    real_sleep = time.sleep

    def sleep(seconds: float) -> None:
        if threading.current_thread() is not threading.main_thread():
            real_sleep(seconds)  # another thread of this process (time.sleep is one function for all of them)
            return
        waits.append(seconds)
        if len(waits) >= 12:
            raise Enough

    monkeypatch.setattr(api.time, "sleep", sleep)
    with pytest.raises(Enough):
        batch.wait(poll_seconds=0.5)
    assert waits[0] == api.FIRST_POLL_SECONDS
    assert all(later > earlier for earlier, later in itertools.pairwise(waits[:7]))  # growing
    assert max(waits) == waits[-1] == 0.5  # then one read per poll_seconds, never longer
    waits.clear()
    with pytest.raises(Enough):
        batch.wait(poll_seconds=0.01)  # a poll shorter than the first wait is kept
    assert set(waits) == {0.01}


def test_close_conversation_task_checks_its_options(redis_url: str, raw: redis.Redis,
                                                   monkeypatch: pytest.MonkeyPatch) -> None:
    """``close_conversation.delay`` / ``apply_async`` (the app-side entry point, settings from the environment)."""
    monkeypatch.setenv("REDIS_URL", redis_url)
    get_producer_settings.cache_clear()  # settings another test of this process read first would send elsewhere
    default_client.cache_clear()
    try:
        refused: list[tuple[Callable[[], object], str]] = [
            (lambda: close_conversation.delay(CID, polcy="fail"), r"unknown close option"),
            (lambda: close_conversation.apply_async((CID,), "policy=fail"), r"options must be a dict"),  # type: ignore[arg-type]
            (lambda: close_conversation.apply_async((CID,), {}, expires=5), r"unknown send option"),
            (lambda: close_conversation.apply_async((CID,), {}, queue="x"), r"queue must be one of"),
        ]
        for call, message in refused:
            with pytest.raises(ValueError, match=message):
                call()
        assert written(raw) == NOTHING
        assert close_conversation.apply_async((CID,), {"policy": "fail"}, queue="bulk").id
        assert queued(raw, "bulk") == 1
    finally:
        get_producer_settings.cache_clear()
        default_client.cache_clear()


def test_sweep_request_wait_checks_its_timeout(client: CloseClient) -> None:
    request = client.sweep({}, dry_run=True)
    with pytest.raises(ValueError, match=r"timeout must be at least 0"):
        request.wait(timeout=-1)


def test_the_valid_values_still_work(client: CloseClient, raw: redis.Redis) -> None:
    recorded = client.close_many([CID, "bad"], on_invalid="record", queue="interactive", label="x" * 300)
    status = recorded.status()
    assert status.total == 2 and status.counts == {"invalid_id": 1} and len(status.label) == 200
    assert queued(raw, "interactive") == 1
    assert client.close(OTHER, countdown=0, policy="fail", allow_other_message_types=False)
    assert client.send_close(OTHER, queue="bulk", priority=3) and queued(raw, "bulk") == 1
    assert [s.batch_id for s in client.batches(1)] == [recorded.id] and client.rejected(1) == []


def finished_batch(client: CloseClient, label: str) -> Batch:
    batch = client.close_many([CID, OTHER], label=label, batch_id=uuid.uuid4().hex)
    for cid, outcome in ((CID, Outcome.CLOSED), (OTHER, Outcome.NOT_FOUND)):
        assert client.results.outcomes.record(CloseResult(cid, outcome, batch_id=batch.id))
    return batch


def test_an_existing_batch_id_is_refused_and_the_batch_is_untouched(client: CloseClient, raw: redis.Redis) -> None:
    batch = finished_batch(client, "first")
    before, published = batch.status(), queued(raw, "bulk")
    for ids, label, on_invalid in (([CID], "", "record"), ([OTHER, "bad", CID, str(uuid.uuid4())], "x", "record"),
                                   ([CID, CID], "", "abort")):
        with pytest.raises(BatchIdInUse, match=batch.id):
            client.close_many(ids, batch_id=batch.id, label=label, on_invalid=on_invalid)
    assert batch.status() == before and before.state is BatchState.FINISHED
    assert before.label == "first" and before.total == 2 and before.counts == {"closed": 1, "not_found": 1}
    assert queued(raw, "bulk") == published  # nothing published for the refused batches
    assert {r.conversation_id for r in batch.results()} == {CID, OTHER}


def test_a_batch_id_is_used_once_by_concurrent_producers(redis_url: str, raw: redis.Redis) -> None:
    """Eight producers start a batch with the same id at once: one batch, its items published once."""
    batch_id = uuid.uuid4().hex
    barrier = threading.Barrier(8)
    items = [str(uuid.UUID(int=i + 1, version=4)) for i in range(50)]

    def start(n: int) -> str:
        client = CloseClient(load_producer_settings(redis_url=redis_url))
        barrier.wait()
        try:
            return client.close_many(items, batch_id=batch_id, label=f"producer {n}").id
        except BatchIdInUse:
            return "refused"

    with ThreadPoolExecutor(8) as pool:
        outcomes = list(pool.map(start, range(8)))
    assert outcomes.count(batch_id) == 1 and outcomes.count("refused") == 7
    status = CloseClient(load_producer_settings(redis_url=redis_url)).batch(batch_id).status()
    assert status.total == 50 and status.duplicates == 0 and status.label == f"producer {outcomes.index(batch_id)}"
    assert queued(raw, "bulk") == 50


def test_cancel_leaves_a_finished_batch_finished(client: CloseClient) -> None:
    batch = finished_batch(client, "done")
    status = batch.cancel()
    assert status.state is BatchState.FINISHED and status.reason == ""
    running = client.close_many([CID])
    assert running.cancel().state is BatchState.CANCELLED
    assert not running.status().finished  # its item has not run yet: it ends as cancelled when it does


def test_invalid_argument_is_a_closer_error_and_a_value_error() -> None:
    from genesys_closer.config.errors import CloserError

    assert issubclass(InvalidArgument, CloserError) and issubclass(InvalidArgument, ValueError)
    assert issubclass(BatchIdInUse, InvalidArgument)
