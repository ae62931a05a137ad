"""The worker's service parts, one job each, against a real Redis with in-process doubles for Genesys and Celery
and an injected clock: one close (``CloseRunner``), recovery of lost work (``Recovery``), sweeps (``SweepRunner``)."""

from __future__ import annotations

import contextlib
import json
from collections.abc import Callable, Iterator
from dataclasses import dataclass, field
from typing import Any

import pytest
import redis

from genesys_closer.config import load_worker_settings
from genesys_closer.config.redis_keys import KEYS
from genesys_closer.shared.batches import ORIGIN_SWEEP, BatchWriter
from genesys_closer.shared.locks import OwnedLock
from genesys_closer.shared.options import CloseOptions
from genesys_closer.shared.outcomes import CloseResult, Outcome
from genesys_closer.shared.stores import ResultStores
from genesys_closer.shared.stores.batch_state import BatchState
from genesys_closer.worker.checks.batched_checks import CheckQueue
from genesys_closer.worker.checks.item_lifecycle import CheckTiming, ItemRef, Stage
from genesys_closer.worker.checks.item_progress import ItemProgress
from genesys_closer.worker.genesys.errors import ServerError
from genesys_closer.worker.recovery.broker_scan import HeldClose
from genesys_closer.worker.recovery.redrive import Recovery
from genesys_closer.worker.running.breaker import CircuitBreaker
from genesys_closer.worker.running.close_run import CloseRunner, RetryLater, TaskContext
from genesys_closer.worker.running.inflight_lock import holder_here, namespace_here, token_for
from genesys_closer.worker.running.patch_guard import claim_seconds
from genesys_closer.worker.sweeps.sweep_run import SweepRunner
from tests.worker.test_inflight_lock import exited_process

CID = "3b47a74f-a827-4166-ae62-f6ba6d7268ae"
OTHER = "00000000-0000-4000-8000-000000000001"


class Clock:
    def __init__(self, now: float = 1_700_000_000.0) -> None:
        self.now = now

    def __call__(self) -> float:
        return self.now


@dataclass
class ScriptedCloser:
    """Closes as told: each call pops the next step, a CloseResult outcome or an exception; ``patch`` steps call
    ``on_patched`` first (as the real closer does before it sends the PATCH)."""

    steps: list[tuple[str, Outcome | Exception]] = field(default_factory=list)
    calls: list[CloseOptions] = field(default_factory=list)
    turns: list[float | None] = field(default_factory=list)  # what hold_first_slot answers (then: a slot)
    tickets: list[str] = field(default_factory=list)

    def hold_first_slot(self, ticket: str) -> float | None:
        self.tickets.append(ticket)
        return self.turns.pop(0) if self.turns else None

    def close(self, conversation_id: str, options: CloseOptions,
              on_patched: Callable[[str], None] | None = None) -> CloseResult:
        self.calls.append(options)
        kind, what = self.steps.pop(0)
        if kind == "patch" and on_patched is not None:
            on_patched(conversation_id)
        if isinstance(what, Exception):
            what.api_calls = 2  # type: ignore[attr-defined]
            raise what
        return CloseResult(conversation_id, what, api_calls=3)


@dataclass
class FakeApp:
    """The two Celery calls BatchWriter makes, recorded."""

    sent: list[tuple[str, list[Any], dict[str, Any], str]] = field(default_factory=list)
    on_send: Callable[[str], None] | None = None  # called with the task id as the message goes (a worker taking it)

    @contextlib.contextmanager
    def producer_or_acquire(self) -> Iterator[None]:
        yield None

    def send_task(self, name: str, args: list[Any], kwargs: dict[str, Any], queue: str, producer: Any = None,
                  ignore_result: bool = False, task_id: str | None = None) -> Any:
        self.sent.append((name, args, kwargs, queue))
        sent_id = task_id or f"task-{len(self.sent)}"
        if self.on_send is not None:
            self.on_send(sent_id)
        return type("Sent", (), {"id": sent_id})()


@pytest.fixture
def clock() -> Clock:
    return Clock()


@pytest.fixture
def results(redis_client: redis.Redis, clock: Clock) -> ResultStores:
    return ResultStores.open(redis_client, 3600, clock=clock)


def runner(redis_client: redis.Redis, results: ResultStores, closer: ScriptedCloser, clock: Clock,
           **settings: Any) -> CloseRunner:
    values = {"task_retry_window_seconds": 600, "task_max_retries": 50, **settings}
    worker_settings = load_worker_settings(**values)
    breaker = CircuitBreaker(redis_client, "bucket", threshold=2, open_seconds=60)
    return CloseRunner(worker_settings, redis_client, closer, CloseOptions(), results,  # type: ignore[arg-type]
                       breaker, clock=clock)


# -- one close -------------------------------------------------------------------------------------------------------
def test_invalid_id_is_recorded_without_calling_the_closer(redis_client: redis.Redis, results: ResultStores,
                                                           clock: Clock) -> None:
    closer = ScriptedCloser()
    record = runner(redis_client, results, closer, clock).run("../x", TaskContext("t1", 0, None), {})
    assert record["outcome"] == "invalid_id" and record["finished_at"] == clock.now and closer.calls == []
    assert results.rejected.recent()[0]["task_id"] == "t1"


def test_cancelled_and_stopped_batches_are_not_attempted(redis_client: redis.Redis, results: ResultStores,
                                                         clock: Clock) -> None:
    closer = ScriptedCloser()
    run = runner(redis_client, results, closer, clock)
    writer = BatchWriter(FakeApp(), results, clock)  # type: ignore[arg-type]
    for end, outcome in ((results.batches.cancel, "cancelled"), (results.batches.stop, "not_attempted")):
        batch_id = writer.start([CID], options={})
        assert end(batch_id, "why").changed
        assert run.run(CID, TaskContext("t", 0, batch_id), {})["outcome"] == outcome
    assert closer.calls == []


def test_open_breaker_stops_the_batch(redis_client: redis.Redis, results: ResultStores, clock: Clock) -> None:
    closer = ScriptedCloser([("get", Outcome.FORBIDDEN), ("get", Outcome.FORBIDDEN)])
    run = runner(redis_client, results, closer, clock)
    third = "00000000-0000-4000-8000-000000000002"
    batch_id = BatchWriter(FakeApp(), results, clock).start([CID, OTHER, third], options={})  # type: ignore[arg-type]
    outcomes = [run.run(cid, TaskContext(cid, 0, batch_id), {})["outcome"] for cid in (CID, OTHER)]
    assert outcomes == ["forbidden"] * 2
    record = run.run(third, TaskContext("t3", 0, batch_id), {})
    assert record["outcome"] == "not_attempted" and "circuit breaker open" in record["error"]
    assert results.batches.state(batch_id)[0] == "stopped" and len(closer.calls) == 2


def test_open_breaker_never_overwrites_a_finished_or_cancelled_batch(redis_client: redis.Redis,
                                                                     results: ResultStores, clock: Clock) -> None:
    """A late copy of an item runs while the breaker is open: its finished (or cancelled) batch stays so."""
    closer = ScriptedCloser([("get", Outcome.CLOSED)])
    run = runner(redis_client, results, closer, clock)
    writer = BatchWriter(FakeApp(), results, clock)  # type: ignore[arg-type]
    finished = writer.start([CID], options={})
    assert run.run(CID, TaskContext("t1", 0, finished), {})["outcome"] == "closed"
    cancelled = writer.start([OTHER], options={})
    assert results.batches.cancel(cancelled).changed
    for _ in range(2):
        run.breaker.record_failure("missing conversation:communication:disconnect")
    assert run.breaker.open_reason() is not None
    assert run.run(CID, TaskContext("t1-again", 0, finished), {})["outcome"] == "not_attempted"
    assert run.run(OTHER, TaskContext("t2", 0, cancelled), {})["outcome"] == "cancelled"
    assert results.batches.state(finished) == (BatchState.FINISHED, "")
    assert results.batches.state(cancelled) == (BatchState.CANCELLED, "cancelled by operator")
    assert results.batches.status(finished).done == 1  # type: ignore[union-attr]  # the late copy counted nothing


def test_inflight_lock_never_lets_a_second_copy_run(redis_client: redis.Redis,
                                                                          results: ResultStores, clock: Clock) -> None:
    closer = ScriptedCloser([("patch", Outcome.CLOSED)])
    run = runner(redis_client, results, closer, clock, task_time_limit_seconds=20, task_soft_time_limit_seconds=10)
    first = OwnedLock(redis_client, KEYS.inflight(CID), run.settings.inflight_lock_seconds)
    assert first.acquire(token_for("first-task", holder_here()))  # held by a live process (this one)
    assert 20 < redis_client.pttl(KEYS.inflight(CID)) / 1000 <= 21  # outlives the task's hard time limit
    for task_id in ("second-task", "first-task"):  # another close, and the same task redelivered: both wait
        with pytest.raises(RetryLater, match="another task"):
            run.run(CID, TaskContext(task_id, 1, None), {})
    assert closer.calls == []
    first.release()
    assert run.run(CID, TaskContext("first-task", 2, None), {})["outcome"] == "closed"
    assert redis_client.get(KEYS.inflight(CID)) is None  # released by its owner


@pytest.mark.skipif(namespace_here() is None, reason="needs Linux /proc")
def test_a_copy_takes_over_the_lock_of_a_run_whose_process_is_gone(redis_client: redis.Redis,
                                                                   results: ResultStores, clock: Clock) -> None:
    """A run SIGKILLed (or terminated on a broker connection loss) keeps its lock until it expires; its redelivered
    copy proves the holder gone (``test_inflight_lock.py``) and closes at once instead of waiting for it."""
    closer = ScriptedCloser([("patch", Outcome.CLOSED)])
    run = runner(redis_client, results, closer, clock)
    gone = exited_process()
    assert OwnedLock(redis_client, KEYS.inflight(CID), run.settings.inflight_lock_seconds).acquire(
        token_for("first-task", gone))
    assert run.run(CID, TaskContext("first-task", 0, None), {})["outcome"] == "closed"
    assert redis_client.get(KEYS.inflight(CID)) is None


def test_retry_window_on_the_injected_clock(redis_client: redis.Redis, results: ResultStores, clock: Clock) -> None:
    closer = ScriptedCloser([("get", ServerError("boom", 503)), ("get", ServerError("boom", 503))])
    run = runner(redis_client, results, closer, clock, task_retry_window_seconds=600, task_max_countdown_seconds=5)
    with pytest.raises(RetryLater) as later:
        run.run(CID, TaskContext("t", 0, None), {})
    assert 0 <= later.value.countdown <= 5
    clock.now += 601  # past the retry window: the next failure is final, with every call counted
    record = run.run(CID, TaskContext("t", 1, None), {})
    assert record["outcome"] == "failed" and "retries exhausted after 601 s" in record["error"]
    assert record["api_calls"] == 4 and record["attempts"] == 2


def test_redriven_task_knows_our_patch_landed(redis_client: redis.Redis, results: ResultStores, clock: Clock) -> None:
    """The progress marker is keyed by batch and conversation, not task id: a re-driven task (a new task id) still
    knows an earlier attempt sent the PATCH, so the closer can attribute the close to us."""
    closer = ScriptedCloser([("patch", ServerError("lost answer", 502)), ("get", Outcome.CLOSED)])
    run = runner(redis_client, results, closer, clock)
    results.batches.create("b")
    results.batches.add_members("b", [CID])
    with pytest.raises(RetryLater):
        run.run(CID, TaskContext("original", 0, "b"), {})
    assert run.run(CID, TaskContext("redriven", 0, "b"), {})["outcome"] == "closed"
    assert [options.previously_patched for options in closer.calls] == [False, True]
    assert redis_client.get(KEYS.progress(CID, "b")) is None


def test_soft_time_limit_runs_are_retried_within_the_window(redis_client: redis.Redis, results: ResultStores,
                                                            clock: Clock) -> None:
    """A run the worker's own soft time limit stopped is a transient failure: retried with a countdown, and once the
    retry window has passed it ends ``failed`` (it used to be retried every 5 s for ever, outcome or not)."""
    run = runner(redis_client, results, ScriptedCloser(), clock, task_retry_window_seconds=600,
                 task_max_countdown_seconds=5)
    with pytest.raises(RetryLater) as later:
        run.after_time_limit(CID, TaskContext("t", 0, None))
    assert 0 <= later.value.countdown <= 5
    clock.now += 601
    record = run.after_time_limit(CID, TaskContext("t", 1, None))
    assert record["outcome"] == "failed" and "soft time limit" in record["error"]
    assert results.outcomes.latest(CID) is not None and redis_client.get(KEYS.progress(CID, None)) is None


def test_a_patch_out_elsewhere_makes_the_next_close_wait(redis_client: redis.Redis, results: ResultStores,
                                                         clock: Clock) -> None:
    """The fresh look after the in-flight lock: while another close of ours (here a batch's item) has a PATCH out
    and no outcome, a standalone close of the same conversation waits without a call; once that outcome is recorded
    (which releases the claim) it runs, and its own claim is released with its outcome."""
    closer = ScriptedCloser([("get", Outcome.ALREADY_CLOSED)])
    run = runner(redis_client, results, closer, clock)
    assert run.guard.claim(CID, "a" * 32) is None
    assert run.guard.claim(CID, "a" * 32) is None  # the same item again (a retry, a re-driven copy): still its own
    assert run.guard.claim(CID, None) == "a" * 32
    with pytest.raises(RetryLater, match="has a PATCH out"):
        run.run(CID, TaskContext("single", 0, None), {})
    assert closer.calls == []
    assert 0 < redis_client.pttl(KEYS.patch_claim(CID)) / 1000 <= claim_seconds(run.settings)
    run.record_checked(CloseResult(CID, Outcome.CLOSED, batch_id="a" * 32))  # the batch item's outcome
    assert redis_client.get(KEYS.patch_claim(CID)) is None
    assert run.run(CID, TaskContext("single", 1, None), {})["outcome"] == "already_closed"
    assert redis_client.get(KEYS.patch_claim(CID)) is None


BATCH = "b" * 32


def test_bulk_close_without_a_slot_near_is_handed_back_until_its_turn(redis_client: redis.Redis,
                                                                       results: ResultStores, clock: Clock) -> None:
    """A bulk item whose org's limiter has no slot near makes no call and counts no failure: its task goes back to
    the broker until its turn (capped by TASK_MAX_COUNTDOWN_SECONDS), its PATCH claim let go; the same task (same
    ticket) then runs. Single closes never hand back: an app or a person waits for them."""
    from genesys_closer.shared.names import QUEUE_BULK

    closer = ScriptedCloser([("get", Outcome.CLOSED), ("get", Outcome.ALREADY_CLOSED)], turns=[3.0, 40.0])
    run = runner(redis_client, results, closer, clock, task_max_countdown_seconds=25)
    results.batches.create(BATCH)
    results.batches.add_members(BATCH, [CID])
    with pytest.raises(RetryLater, match="its turn") as later:
        run.run(CID, TaskContext("task-1", 0, BATCH, queue=QUEUE_BULK), {})
    assert 2.75 <= later.value.countdown <= 2.8 and closer.calls == []  # a little before its turn
    assert redis_client.get(KEYS.patch_claim(CID)) is None  # another close of ours may PATCH meanwhile
    assert ItemProgress(redis_client).read(ItemRef(BATCH, CID)).api_calls == 0  # nothing counted as a failure
    with pytest.raises(RetryLater) as later:
        run.run(CID, TaskContext("task-1", 1, BATCH, queue=QUEUE_BULK), {})
    assert later.value.countdown == 25  # a far turn: back at the longest countdown, the ticket keeps its place
    assert run.run(CID, TaskContext("task-1", 2, BATCH, queue=QUEUE_BULK), {})["outcome"] == "closed"
    assert closer.tickets == ["task-1"] * 3
    assert run.run(CID, TaskContext("single", 0, None), {})["outcome"] == "already_closed"
    assert closer.tickets == ["task-1"] * 3  # a single close asks for no ticket


def test_a_handed_back_item_whose_patch_may_be_out_keeps_its_claim(redis_client: redis.Redis,
                                                                    results: ResultStores, clock: Clock) -> None:
    """An earlier run of the item sent its PATCH (its answer was lost): while the item waits for its turn, no other
    close of ours may PATCH the conversation, so the claim stays."""
    from genesys_closer.shared.names import QUEUE_BULK

    closer = ScriptedCloser([("get", Outcome.CLOSED)], turns=[3.0])
    run = runner(redis_client, results, closer, clock)
    results.batches.create(BATCH)
    results.batches.add_members(BATCH, [CID])
    ItemProgress(redis_client).mark_patched(ItemRef(BATCH, CID))
    with pytest.raises(RetryLater, match="its turn"):
        run.run(CID, TaskContext("task-1", 1, BATCH, queue=QUEUE_BULK), {})
    assert run.guard.claim(CID, None) == BATCH  # held for the batch item: a single close would wait
    assert run.run(CID, TaskContext("task-1", 2, BATCH, queue=QUEUE_BULK), {})["outcome"] == "closed"


# -- recovery --------------------------------------------------------------------------------------------------------
def recovery(redis_client: redis.Redis, results: ResultStores, writer: BatchWriter,
             held: set[HeldClose] | None = None) -> Recovery:
    return Recovery(redis_client, results, writer, stall_seconds=300, held=lambda _: set(held or ()))


def test_redrive_requeues_only_stalled_items_the_broker_lost(redis_client: redis.Redis, results: ResultStores,
                                                              clock: Clock) -> None:
    app = FakeApp()
    writer = BatchWriter(app, results, clock)  # type: ignore[arg-type]
    third = "00000000-0000-4000-8000-000000000003"
    batch_id = writer.start([CID, OTHER, third], options={"policy": "fail"})
    app.sent.clear()
    results.outcomes.record(CloseResult(CID, Outcome.CLOSED, batch_id=batch_id))
    still_queued = {HeldClose("t-3", third, batch_id)}
    recover = recovery(redis_client, results, writer, still_queued)
    recover.run()  # first check: remembers Redis' run id
    clock.now += 299
    assert recover.run().batches == {}
    clock.now += 2
    report = recover.run()
    assert report.batches == {batch_id: 1} and not report.redis_restarted
    assert app.sent == [("worker.tasks.close_conversation", [OTHER], {"batch_id": batch_id, "policy": "fail"},
                         "bulk")]
    assert recover.run().batches == {}  # just re-driven: it waits another stall window
    clock.now += 301
    assert recover.run().batches == {batch_id: 1}


def test_redis_restart_resends_what_was_lost_at_once(redis_client: redis.Redis, results: ResultStores,
                                                      clock: Clock) -> None:
    app = FakeApp()
    writer = BatchWriter(app, results, clock)  # type: ignore[arg-type]
    batch_id = writer.start([CID, OTHER], options={})
    results.pending.track("single-1", "00000000-0000-4000-8000-000000000009", {"policy": "fail"}, "interactive")
    results.pending.track("single-2", "00000000-0000-4000-8000-00000000000a", {}, "interactive")
    app.sent.clear()
    held = {HeldClose("t-2", OTHER, batch_id), HeldClose("single-2", "00000000-0000-4000-8000-00000000000a", None)}
    recover = recovery(redis_client, results, writer, held)
    redis_client.set(KEYS.redis_run_id, "the-run-before-the-restart")
    report = recover.run()  # no stall window waited: the restart is enough
    assert report.redis_restarted and report.batches == {batch_id: 1} and report.standalone == 1
    assert sorted(task[1][0] for task in app.sent) == sorted([CID, "00000000-0000-4000-8000-000000000009"])
    pending = dict(results.pending.entries())
    assert "single-1" not in pending and "single-2" in pending  # the re-sent close is tracked under its new id
    assert [e["options"] for e in pending.values() if e["conversation_id"].endswith("9")] == [{"policy": "fail"}]
    assert not recover.run().redis_restarted  # the new run id is remembered


def test_a_resent_close_that_ends_at_once_leaves_nothing_pending(redis_client: redis.Redis, results: ResultStores,
                                                                  clock: Clock) -> None:
    """Seen after a Redis restart: the re-sent copy ran and recorded its outcome (forgetting its entry) before the
    recovery pass went on to track it, and the entry written then stayed pending with nothing left to end it."""
    app = FakeApp()
    app.on_send = results.pending.forget  # the copy ends as it is sent: what a worker's close does with its entry
    writer = BatchWriter(app, results, clock)  # type: ignore[arg-type]
    results.pending.track("single-1", CID, {}, "interactive")
    recover = recovery(redis_client, results, writer)
    redis_client.set(KEYS.redis_run_id, "the-run-before-the-restart")
    assert recover.run().standalone == 1 and len(app.sent) == 1
    assert dict(results.pending.entries()) == {}


def test_recovery_runs_once_at_a_time(redis_client: redis.Redis, results: ResultStores, clock: Clock) -> None:
    writer = BatchWriter(FakeApp(), results, clock)  # type: ignore[arg-type]
    batch_id = writer.start([CID], options={})
    clock.now += 1000
    held = OwnedLock(redis_client, KEYS.redrive_lock, 60)
    assert held.acquire("another-worker")
    recover = recovery(redis_client, results, writer)
    assert recover.run().batches == {}
    assert held.owner() == "another-worker"  # not released by someone who does not own it
    held.release()
    assert recover.run().batches == {batch_id: 1}


# -- what a message may ask for --------------------------------------------------------------------------------------
def test_spoofed_batch_ids_leave_batches_untouched(redis_client: redis.Redis, results: ResultStores,
                                                   clock: Clock) -> None:
    writer = BatchWriter(FakeApp(), results, clock)  # type: ignore[arg-type]
    batch_id = writer.start([CID], options={})
    closer = ScriptedCloser([("patch", Outcome.CLOSED)] * 6)
    run = runner(redis_client, results, closer, clock)
    for spoof in (batch_id, batch_id + ":items", "*", "1" * 32):  # OTHER is not an item of any of them
        record = run.run(OTHER, TaskContext(f"t-{spoof}", 0, spoof), {})
        assert record["outcome"] == "closed" and record["batch_id"] is None
    status = results.batches.status(batch_id)
    assert status is not None and status.done == 0 and status.total == 1
    assert redis_client.type(KEYS.batch_items(batch_id)) in {"none", "hash"}
    assert run.run(CID, TaskContext("real", 0, batch_id), {})["batch_id"] == batch_id
    assert results.batches.status(batch_id).finished  # type: ignore[union-attr]


def test_options_only_narrow_the_configuration(redis_client: redis.Redis, results: ResultStores,
                                               clock: Clock) -> None:
    closer = ScriptedCloser([("patch", Outcome.CLOSED)] * 3)
    run = runner(redis_client, results, closer, clock)  # CLOSE_POLICY unset: fail only
    for overrides, reason in (({"policy": "teardown"}, "not allowed on this worker"),
                              ({"allow_other_message_types": True}, "CLOSE_ALLOW_OTHER_MESSAGE_TYPES"),
                              ({"skip_initial_get": True}, "unknown close option"),
                              ({"x" * 100_000: 1}, "unknown close option")):
        record = run.run(CID, TaskContext("t", 0, None), overrides)
        assert record["outcome"] == "invalid_request" and reason in record["error"]
        assert len(record["error"]) <= 1000
    assert closer.calls == []
    widened = runner(redis_client, results, closer, clock, close_policy="participants")
    assert widened.run(CID, TaskContext("t2", 0, None), {"policy": "participants"})["outcome"] == "closed"
    allowed = runner(redis_client, results, closer, clock, close_allowed_policies="fail,teardown")
    assert allowed.run(CID, TaskContext("t3", 0, None), {"policy": "teardown"})["outcome"] == "closed"


def test_a_lost_batched_patch_task_reads_before_patching_again(redis_client: redis.Redis, results: ResultStores,
                                                              clock: Clock) -> None:
    """A copy of a batch item's PATCH task marked its PATCH sent and was lost before the item joined the confirm set:
    the task sent again takes the direct path (next_step), which reads the conversation first and knows the PATCH
    may have landed, instead of sending a second PATCH blind."""
    writer = BatchWriter(FakeApp(), results, clock)  # type: ignore[arg-type]
    batch_id = writer.start([CID], options={}, origin=ORIGIN_SWEEP)  # a sweep item: the batched path skips its GET
    ItemProgress(redis_client).mark_patched(ItemRef(batch_id, CID), Stage.PATCH)
    closer = ScriptedCloser([("get", Outcome.CLOSED)])  # no ``disconnect``: the batched PATCH is not sent again
    run = CloseRunner(load_worker_settings(), redis_client, closer, CloseOptions(), results,  # type: ignore[arg-type]
                      CircuitBreaker(redis_client, "bucket", threshold=2, open_seconds=60), clock=clock,
                      checks=CheckQueue(redis_client, CheckTiming(), lambda _: None, clock))
    assert run.run(CID, TaskContext("sent-again", 0, batch_id), {})["outcome"] == "closed"
    [options] = closer.calls
    assert options.previously_patched and not options.skip_initial_get
    assert redis_client.get(KEYS.progress(CID, batch_id)) is None


def test_sweep_batches_skip_the_first_read(redis_client: redis.Redis, results: ResultStores, clock: Clock) -> None:
    writer = BatchWriter(FakeApp(), results, clock)  # type: ignore[arg-type]
    sweep_batch = writer.start([CID], options={}, origin=ORIGIN_SWEEP)
    list_batch = writer.start([OTHER], options={})
    closer = ScriptedCloser([("patch", Outcome.CLOSED)] * 2)
    run = runner(redis_client, results, closer, clock)
    run.run(CID, TaskContext("a", 0, sweep_batch), {})
    run.run(OTHER, TaskContext("b", 0, list_batch), {})
    assert [options.skip_initial_get for options in closer.calls] == [True, False]
    second_sweep = writer.start([CID], options={}, origin=ORIGIN_SWEEP)  # CID has an outcome of ours now
    closer.steps.append(("get", Outcome.ALREADY_CLOSED))
    assert run.run(CID, TaskContext("c", 0, second_sweep), {})["outcome"] == "already_closed"
    assert closer.calls[-1].skip_initial_get is False  # read first: no PATCH after another close of ours ended


# -- sweeps ----------------------------------------------------------------------------------------------------------
class FakeAnalytics:
    def __init__(self, rows: list[dict[str, Any]]) -> None:
        self.rows = rows
        self.queries: list[dict[str, Any]] = []

    def query_conversation_details(self, query: dict[str, Any]) -> dict[str, Any]:
        self.queries.append(query)
        return {"conversations": self.rows, "totalHits": len(self.rows)}


def row(cid: str, start: str, state: str = "connected") -> dict[str, Any]:
    return {"conversationId": cid, "conversationStart": start,
            "participants": [{"purpose": "customer", "sessions": [{"mediaType": "message",
                                                                   "messageType": "webmessaging"}]}]}


def test_sweep_records_candidates_and_starts_a_batch(redis_client: redis.Redis, results: ResultStores,
                                                     clock: Clock) -> None:
    app = FakeApp()
    analytics = FakeAnalytics([row(CID, "2023-11-14T20:00:00.000Z"), row(OTHER, "2023-11-14T22:10:00.000Z")])
    sweeps = SweepRunner(redis_client, analytics, lambda call: call(), results,  # type: ignore[arg-type]
                         BatchWriter(app, results, clock), 60, clock=clock)
    summary = sweeps.run("s1", {"min_age_minutes": 60, "lookback_days": 1}, dry_run=False, options={},
                         scheduled=False)
    assert summary["candidates"] == 2 and summary["chosen"] == 1  # clock: 2023-11-14T22:13:20Z
    assert [task[1] for task in app.sent] == [[CID]] and app.sent[0][2] == {"batch_id": summary["batch_id"]}
    assert results.batches.fields(summary["batch_id"], "origin") == [ORIGIN_SWEEP]
    reasons = {c["conversation_id"]: c["chosen"] for c in results.sweeps.candidates("s1")}
    assert reasons == {CID: True, OTHER: False}
    assert results.sweeps.summary("s1") == summary
    assert json.loads(json.dumps(summary))["batch_id"] == summary["batch_id"]


def test_one_sweep_at_a_time_and_bad_filters(redis_client: redis.Redis, results: ResultStores, clock: Clock) -> None:
    sweeps = SweepRunner(redis_client, FakeAnalytics([]), lambda call: call(), results,  # type: ignore[arg-type]
                         BatchWriter(FakeApp(), results, clock), 60, clock=clock)  # type: ignore[arg-type]
    assert "invalid sweep" in sweeps.run("s0", {"nope": 1}, dry_run=True, options={}, scheduled=False)["error"]
    for wrong in ({"min_age_minutes": "5"}, {"lookback_days": None}, {"queue_ids": 7}, {"started_after": 3}):
        # wrong types, as anyone who can write to Redis may send them: an error summary, never a crashed task
        assert "invalid sweep" in sweeps.run("s1", wrong, dry_run=True, options={}, scheduled=False)["error"]
    assert OwnedLock(redis_client, KEYS.sweep_lock, 60).acquire("other-sweep")
    assert sweeps.run("s2", {}, dry_run=True, options={}, scheduled=False)["skipped"] == "another sweep is running"
