"""The batched checks' Redis side and the pump's decisions, against a real redis-server with a scripted client and
an injected clock (no HTTP, no Celery)."""

from __future__ import annotations

import itertools
import threading
import uuid
from collections.abc import Callable
from dataclasses import dataclass, field
from typing import Any

import pytest
import redis

from genesys_closer.config.redis_keys import KEYS
from genesys_closer.shared.options import CloseOptions, OptionLimits
from genesys_closer.shared.outcomes import CloseResult, Outcome
from genesys_closer.shared.redis_connection import connect
from genesys_closer.shared.stores.batch_store import BatchStore
from genesys_closer.worker.checks.batched_checks import CheckPump, CheckQueue
from genesys_closer.worker.checks.item_lifecycle import MAX_READ_FAILURES, CheckTiming, ItemRef, LiveRead, Stage
from genesys_closer.worker.genesys.errors import ServerError

BATCH = "b" * 32


class Clock:
    def __init__(self) -> None:
        self.now = 1_000.0

    def __call__(self) -> float:
        return self.now


@dataclass
class Harness:
    queue: CheckQueue
    pump: CheckPump
    clock: Clock
    pumps: list[float] = field(default_factory=list)
    published: list[tuple[str, list[str]]] = field(default_factory=list)
    finished: list[CloseResult] = field(default_factory=list)
    rows: list[dict[str, Any]] | Exception = field(default_factory=list)
    reads: list[list[str]] = field(default_factory=list)
    during_read: Callable[[], object] = lambda: None


class ScriptedClient:
    def __init__(self, harness: Harness) -> None:
        self.harness = harness

    def get_analytics_conversations(self, ids: list[str], tally: Any = None) -> list[dict[str, Any]]:
        self.harness.reads.append(list(ids))
        self.harness.during_read()
        if tally is not None:
            tally.api_calls += 1
        if isinstance(self.harness.rows, Exception):
            raise self.harness.rows
        return [row for row in self.harness.rows if row["conversationId"] in ids]


class Publisher:
    def __init__(self, harness: Harness) -> None:
        self.harness = harness

    def publish(self, batch_id: str, ids: list[str], options: dict[str, Any], queue: str) -> int:
        self.harness.published.append((batch_id, list(ids)))
        return len(ids)


def harness(client: redis.Redis, **timing: Any) -> Harness:
    clock = Clock()
    pumps: list[float] = []
    finished: list[CloseResult] = []
    queue = CheckQueue(client, CheckTiming(**timing), pumps.append, clock)
    pump = CheckPump(queue, None, lambda call: call(), None, finished.append,  # type: ignore[arg-type]
                     CloseOptions(), OptionLimits(), sleep=lambda s: setattr(clock, "now", clock.now + s))
    h = Harness(queue, pump, clock, pumps=pumps, finished=finished)
    pump.client = ScriptedClient(h)  # type: ignore[assignment]
    pump.batches = Publisher(h)  # type: ignore[assignment]
    BatchStore(client, 3600).create(BATCH)
    return h


def enter_precheck(h: Harness, cid: str) -> None:
    """What an item task does with a new item (``next_step``: join the precheck set, due now)."""
    h.queue.join([ItemRef(BATCH, cid)], Stage.PRECHECK, h.clock())


def enter_confirm(h: Harness, cid: str, *, patched: bool, calls: float) -> None:
    """What an item task does once its PATCH was taken."""
    h.queue.join([ItemRef(BATCH, cid)], Stage.CONFIRM, h.clock() + h.queue.timing.first_check_seconds,
                 add_calls=calls, patched=patched)


def row(cid: str, *, ended: bool = False, message_type: str | None = "webmessaging",
        conversation_end: bool = True) -> dict[str, Any]:
    segment = {"segmentType": "interact", "segmentStart": "2026-01-01T00:00:00.000Z"}
    if ended:
        segment["segmentEnd"] = "2026-01-01T00:01:00.000Z"
    session: dict[str, Any] = {"mediaType": "message", "segments": [segment]}
    if message_type is not None:
        session["messageType"] = message_type
    found: dict[str, Any] = {"conversationId": cid, "participants": [{"purpose": "customer", "sessions": [session]}]}
    if ended and conversation_end:
        found["conversationEnd"] = "2026-01-01T00:01:00.000Z"
    return found


def ids(count: int) -> list[str]:
    return [str(uuid.uuid4()) for _ in range(count)]


def test_a_read_waits_for_a_fifth_of_a_chunk_or_for_its_oldest_item(redis_client: redis.Redis) -> None:
    h = harness(redis_client, chunk_size=10, gather_seconds=1.0)
    [alone] = ids(1)
    enter_precheck(h, alone)
    assert h.pumps == [1.0]  # one pump, for when it has waited 1 s
    assert h.pump.drain_ready() == 0  # a fifth of a chunk (2) is not due, nobody waited long enough
    h.clock.now += 1.0
    h.queue.arrived()  # that pump starts
    h.rows = [row(alone)]
    assert h.pump.drain_ready() == 1 and h.reads == [[alone]]
    pair = ids(2)
    for cid in pair:
        enter_precheck(h, cid)
    assert h.pumps[-1] == 0.0  # enough for a read: a pump at once
    assert h.pump.drain_ready() == 1 and sorted(h.reads[-1]) == sorted(pair)


def test_the_precheck_decides_per_item_from_one_read(redis_client: redis.Redis) -> None:
    """Only an open, visibly web messaging row goes to the PATCH; analytics never ends an item by itself."""
    h = harness(redis_client, chunk_size=10, gather_seconds=0.0)
    ended, sms, unknown, open_one, untyped = ids(5)
    for cid in (ended, sms, unknown, open_one, untyped):
        enter_precheck(h, cid)
    h.rows = [row(ended, ended=True), row(sms, message_type="sms"), row(open_one), row(untyped, message_type=None)]
    assert h.pump.drain_ready() == 1
    assert h.finished == []  # nothing recorded on analytics' word
    assert {cid for _, cids in h.published for cid in cids} == {ended, sms, unknown, open_one, untyped}
    assert h.queue.progress(BATCH, open_one).stage is Stage.PATCH
    for cid, why in ((ended, LiveRead.LOOKED_ENDED), (sms, LiveRead.NOT_VISIBLY_WEB),
                     (untyped, LiveRead.NOT_VISIBLY_WEB), (unknown, None)):
        progress = h.queue.progress(BATCH, cid)
        assert progress.stage is Stage.DIRECT and progress.live_read is why and not progress.confirm_only
    assert h.queue.progress(BATCH, unknown).api_calls == 0.2  # its share of one read for five items
    assert redis_client.zcard(KEYS.checks(Stage.PRECHECK)) == 0


def test_confirmation_retries_with_growing_intervals_then_falls_back(redis_client: redis.Redis) -> None:
    h = harness(redis_client, chunk_size=10, gather_seconds=0.0, first_check_seconds=1.0, max_interval_seconds=4.0,
                timeout_seconds=10.0)
    late, soon = ids(2)
    for cid in (late, soon):
        enter_confirm(h, cid, patched=True, calls=1.0)
    h.rows = [row(late), row(soon)]
    checks = []
    while not h.published:
        h.clock.now += 0.5
        if h.pump.drain_ready():
            checks.append(h.clock.now - 1000)
        if len(checks) == 2:
            h.rows = [row(late), row(soon, ended=True)]
    assert [r.conversation_id for r in h.finished] == [soon] and h.finished[0].outcome is Outcome.CLOSED
    assert h.finished[0].api_calls == 1.0 + 3 * 0.5  # its PATCH and its share of three reads
    intervals = [b - a for a, b in itertools.pairwise(checks)]
    assert intervals == sorted(intervals) and max(intervals) <= 4.0  # growing, capped
    assert h.published == [(BATCH, [late])] and checks[-1] >= 10.0
    progress = h.queue.progress(BATCH, late)
    assert progress.stage == Stage.DIRECT and progress.confirm_only and progress.patched  # confirm by a read, no PATCH


def test_a_confirmation_without_conversation_end_is_read(redis_client: redis.Redis) -> None:
    """Every segment ended but no conversationEnd: not analytics' documented word, so a read confirms."""
    h = harness(redis_client, chunk_size=10, gather_seconds=0.0)
    documented, inferred = ids(2)
    for cid in (documented, inferred):
        enter_confirm(h, cid, patched=True, calls=1.0)
    h.rows = [row(documented, ended=True), row(inferred, ended=True, conversation_end=False)]
    h.clock.now += 1.0
    assert h.pump.drain_ready() == 1
    assert [r.conversation_id for r in h.finished] == [documented] and h.finished[0].confirmed_by == "analytics"
    progress = h.queue.progress(BATCH, inferred)
    assert progress.stage is Stage.DIRECT and progress.confirm_only and progress.live_read is LiveRead.SEGMENTS_ONLY


def test_failed_reads_back_off_then_send_items_to_the_direct_path(redis_client: redis.Redis) -> None:
    h = harness(redis_client, chunk_size=10, gather_seconds=0.0)
    [cid] = ids(1)
    enter_precheck(h, cid)
    h.rows = ServerError("boom", 503)
    for _ in range(MAX_READ_FAILURES):
        h.clock.now += 10
        assert h.pump.drain_ready() == 1
    assert h.published == [(BATCH, [cid])] and len(h.reads) == MAX_READ_FAILURES
    assert h.queue.progress(BATCH, cid).stage == Stage.DIRECT


def test_a_pump_is_sent_once_for_the_earliest_time_needed(redis_client: redis.Redis) -> None:
    h = harness(redis_client, gather_seconds=0.0)
    h.queue.kick(1005.0)
    h.queue.kick(1006.0)  # a pump is already due earlier
    h.queue.kick(1002.0)  # this one must come sooner
    assert h.pumps == [5.0, 2.0]
    h.clock.now = 1002.0
    h.queue.arrived()  # the pump for 1002 started: later items may send another
    h.queue.kick(1004.0)
    assert h.pumps == [5.0, 2.0, 2.0]


def test_a_pump_that_finds_the_lock_held_comes_back_when_it_expires(redis_client: redis.Redis) -> None:
    h = harness(redis_client, gather_seconds=0.0)
    redis_client.set(KEYS.checks("lock"), "someone", px=7000)
    assert h.pump.run() == 0
    assert len(h.pumps) == 1 and 6.5 <= h.pumps[0] <= 7.0


def test_a_hand_off_a_dead_pump_left_half_done_is_sent_again(redis_client: redis.Redis) -> None:
    """A pump killed after moving items to their next stage but before sending their tasks: the next pump sends them
    (a copy that was sent after all finds its stage moved on), without a read."""
    h = harness(redis_client, gather_seconds=0.0)
    to_patch, to_direct = ids(2)
    for cid in (to_patch, to_direct):
        enter_precheck(h, cid)
    h.queue.move([ItemRef(BATCH, to_patch)], Stage.PATCH)
    h.queue.move([ItemRef(BATCH, to_direct)], Stage.DIRECT)
    assert h.pump.drain_ready() == 0 and not h.reads
    assert sorted(h.published) == sorted([(BATCH, [to_patch]), (BATCH, [to_direct])])
    assert redis_client.zcard(KEYS.checks(Stage.PRECHECK)) == 0


def test_stale_entries_are_dropped(redis_client: redis.Redis) -> None:
    h = harness(redis_client, gather_seconds=0.0)
    [cid] = ids(1)
    redis_client.zadd(KEYS.checks(Stage.CONFIRM), {f"{BATCH}:{cid}": 0, "garbage": 0, f"{BATCH}:not-an-id": 0})
    assert h.pump.drain_ready() == 0 and not h.reads  # nothing worth a read: no request
    assert redis_client.zcard(KEYS.checks(Stage.CONFIRM)) == 0


@pytest.mark.parametrize("lost_to", ["another pump", None])
def test_a_pump_that_cannot_extend_its_lock_stops_draining(redis_client: redis.Redis, lost_to: str | None) -> None:
    """The lock expires during a read (a slow read, a paused process) and another pump may take it: this pump makes
    no further read, leaves the other's lock alone, and sends the next pump only when nobody holds the lock."""
    h = harness(redis_client, chunk_size=10, gather_seconds=0.0)
    waiting, patched = ids(2)
    enter_precheck(h, waiting)
    enter_confirm(h, patched, patched=True, calls=1.0)
    h.clock.now += 5  # both due
    pumps_before = len(h.pumps)

    def lock_lost() -> None:
        redis_client.delete(KEYS.checks("lock"))
        if lost_to is not None:
            redis_client.set(KEYS.checks("lock"), lost_to, px=15_000)

    h.during_read = lock_lost
    h.rows = [row(waiting), row(patched)]
    assert h.pump.run() == 1 and h.reads == [[waiting]]  # the confirm read is not made
    assert redis_client.zscore(KEYS.checks(Stage.CONFIRM), f"{BATCH}:{patched}") is not None  # it waits, not lost
    assert redis_client.get(KEYS.checks("lock")) == lost_to
    assert len(h.pumps) == pumps_before + (0 if lost_to else 1)  # the holder sends the next one


def concurrently(callers: list[Callable[[], object]]) -> None:
    barrier = threading.Barrier(len(callers))

    def run(call: Callable[[], object]) -> None:
        barrier.wait()
        call()

    threads = [threading.Thread(target=run, args=(call,)) for call in callers]
    for thread in threads:
        thread.start()
    for thread in threads:
        thread.join()


def queues(redis_url: str, clock: Clock, count: int) -> tuple[list[CheckQueue], list[float]]:
    """``count`` check queues as separate workers hold them (a client each), sending pumps to one list."""
    sent: list[float] = []
    return [CheckQueue(connect(redis_url), CheckTiming(), sent.append, clock) for _ in range(count)], sent


def test_concurrent_kicks_send_one_pump(redis_url: str) -> None:
    """Many items becoming due at once, on several workers: one pump is sent for them, never one each."""
    clock = Clock()
    workers, sent = queues(redis_url, clock, 6)
    for round_ in range(40):
        workers[0].redis.delete(KEYS.checks("kick"))
        concurrently([lambda q=q: q.kick(clock.now + 2.0) for q in workers])
        assert len(sent) == round_ + 1


class PausedAfterFirstCommand(redis.Redis):
    """A worker's client that stops after its first command until told to go on: another worker's calls then run
    in between, exactly where a read-then-write caller would lose their effect. An atomic caller sends one command
    and never stops."""

    def __init__(self, *args: Any, **kwargs: Any) -> None:
        super().__init__(*args, **kwargs)
        self.sent = 0
        self.paused, self.go_on = threading.Event(), threading.Event()

    def execute_command(self, *args: Any, **options: Any) -> Any:
        if self.sent == 1:
            self.paused.set()
            self.go_on.wait(timeout=10)
        self.sent += 1
        return super().execute_command(*args, **options)


def interleaved(redis_url: str, clock: Clock, first: Callable[[CheckQueue], object],
                between: Callable[[], object]) -> list[float]:
    """Run ``first`` on a paused client, ``between`` at its pause (if it pauses), then let it finish; the pumps
    ``first`` sent."""
    sent: list[float] = []
    paused = PausedAfterFirstCommand.from_url(redis_url, decode_responses=True)
    thread = threading.Thread(target=first, args=(CheckQueue(paused, CheckTiming(), sent.append, clock),))
    thread.start()
    while not paused.paused.wait(timeout=0.01) and thread.is_alive():
        pass
    between()
    paused.go_on.set()
    thread.join(timeout=10)
    return sent


def test_kick_is_one_step(redis_url: str) -> None:
    """Another worker sends a pump between this kick's read and its write: this one sees it, and sends none."""
    clock = Clock()
    [other], sent_by_other = queues(redis_url, clock, 1)
    sent = interleaved(redis_url, clock, lambda q: q.kick(clock.now + 2.0), lambda: other.kick(clock.now + 2.0))
    assert len(sent) + len(sent_by_other) == 1


def test_a_pump_arriving_never_forgets_a_later_pump_on_its_way(redis_url: str) -> None:
    """Two pumps start (each forgets the pump sent for now) while an item sends one for later: the later pump's
    mark stays, so the next item does not send another."""
    clock = Clock()
    (second, item), sent = queues(redis_url, clock, 2)
    item.redis.set(KEYS.checks("kick"), repr(clock.now - 1.0))  # the pump sent for a moment ago starts, twice

    def second_pump_and_an_item() -> None:
        second.arrived()
        item.kick(clock.now + 30.0)

    interleaved(redis_url, clock, lambda q: q.arrived(), second_pump_and_an_item)
    assert sent == [30.0]
    mark = item.redis.get(KEYS.checks("kick"))
    assert mark is not None and float(mark) == clock.now + 30.0  # the next item sends none
    item.kick(clock.now + 31.0)
    assert sent == [30.0]


def test_the_close_task_that_waited_is_told_its_items_outcome_once_it_is_recorded(redis_client: redis.Redis) -> None:
    """What Flower shows: the pump reports every outcome it records to the close task that put the item in the
    confirm set (that task then shows SUCCESS with the record), after recording it; an item still waiting, or one
    whose waiting task is not known (joined by an older worker), is not reported."""
    h = harness(redis_client, gather_seconds=0.0)
    ended, still_open, no_task = ids(3)
    for cid, task_id in ((ended, "task-ended"), (still_open, "task-open")):
        h.queue.join([ItemRef(BATCH, cid)], Stage.CONFIRM, h.clock(), add_calls=1.0, patched=True, task_id=task_id)
    enter_confirm(h, no_task, patched=True, calls=1.0)
    reports: list[tuple[list[tuple[str, dict[str, Any]]], int]] = []
    h.pump.report_ended = lambda told: reports.append((list(told), len(h.finished)))
    h.clock.now += 5
    h.rows = [row(ended, ended=True), row(still_open), row(no_task, ended=True)]
    assert h.pump.drain_ready() == 1
    [(told, recorded_before)] = reports
    assert recorded_before == 2  # both outcomes were recorded before any task was told
    [(task_id, record)] = told
    assert task_id == "task-ended"
    assert record["conversation_id"] == ended and record["outcome"] == "closed" and record["batch_id"] == BATCH
    assert h.queue.progress(BATCH, still_open).task_id == "task-open"  # it waits on, its task still known
