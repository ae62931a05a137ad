"""The batched checks' Redis side and the pump's decisions, against a real redis-server with a scripted client and
an injected clock (no HTTP, no Celery)."""

from __future__ import annotations

import itertools
import uuid
from dataclasses import dataclass, field
from typing import Any

import redis

from genesys_closer.config.redis_keys import KEYS
from genesys_closer.worker.analytics_trust import LiveRead
from genesys_closer.worker.batched_checks import (
    CONFIRM,
    DIRECT,
    MAX_READ_FAILURES,
    PATCH,
    PRECHECK,
    CheckPump,
    CheckQueue,
    CheckTiming,
)
from genesys_closer.worker.closing.options import CloseOptions, OptionLimits
from genesys_closer.worker.closing.outcomes import CloseResult, Outcome
from genesys_closer.worker.genesys.errors import ServerError
from genesys_closer.worker.results import ResultStore

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


class ScriptedClient:
    def __init__(self, harness: Harness) -> None:
        self.harness = harness

    def get_analytics_conversations(self, ids: list[str], tally: Any = None) -> list[dict[str, Any]]:
        self.harness.reads.append(list(ids))
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
    ResultStore(client).create_batch(BATCH)
    return h


def row(cid: str, *, ended: bool = False, message_type: str = "webmessaging",
        conversation_end: bool = True) -> dict[str, Any]:
    segment = {"segmentType": "interact", "segmentStart": "2026-01-01T00:00:00.000Z"}
    if ended:
        segment["segmentEnd"] = "2026-01-01T00:01:00.000Z"
    found: dict[str, Any] = {"conversationId": cid, "participants": [{"purpose": "customer", "sessions": [
        {"mediaType": "message", "messageType": message_type, "segments": [segment]}]}]}
    if ended and conversation_end:
        found["conversationEnd"] = "2026-01-01T00:01:00.000Z"
    return found


def ids(count: int) -> list[str]:
    return [str(uuid.uuid4()) for _ in range(count)]


def test_a_read_waits_for_a_fifth_of_a_chunk_or_for_its_oldest_item(redis_client: redis.Redis) -> None:
    h = harness(redis_client, chunk_size=10, gather_seconds=1.0)
    [alone] = ids(1)
    h.queue.enter_precheck(BATCH, alone)
    assert h.pumps == [1.0]  # one pump, for when it has waited 1 s
    assert h.pump.drain_ready() == 0  # a fifth of a chunk (2) is not due, nobody waited long enough
    h.clock.now += 1.0
    h.queue.arrived()  # that pump starts
    h.rows = [row(alone)]
    assert h.pump.drain_ready() == 1 and h.reads == [[alone]]
    pair = ids(2)
    for cid in pair:
        h.queue.enter_precheck(BATCH, cid)
    assert h.pumps[-1] == 0.0  # enough for a read: a pump at once
    assert h.pump.drain_ready() == 1 and sorted(h.reads[-1]) == sorted(pair)


def test_the_precheck_decides_per_item_from_one_read(redis_client: redis.Redis) -> None:
    """Only an open, visibly web messaging row goes to the PATCH; analytics never ends an item by itself."""
    h = harness(redis_client, chunk_size=10, gather_seconds=0.0)
    ended, sms, unknown, open_one, untyped = ids(5)
    for cid in (ended, sms, unknown, open_one, untyped):
        h.queue.enter_precheck(BATCH, cid)
    h.rows = [row(ended, ended=True), row(sms, message_type="sms"), row(open_one), row(untyped, message_type="")]
    del h.rows[3]["participants"][0]["sessions"][0]["messageType"]
    assert h.pump.drain_ready() == 1
    assert h.finished == []  # nothing recorded on analytics' word
    assert {cid for _, cids in h.published for cid in cids} == {ended, sms, unknown, open_one, untyped}
    assert h.queue.progress(BATCH, open_one).stage == PATCH
    for cid, why in ((ended, LiveRead.LOOKED_ENDED), (sms, LiveRead.NOT_VISIBLY_WEB),
                     (untyped, LiveRead.NOT_VISIBLY_WEB), (unknown, None)):
        progress = h.queue.progress(BATCH, cid)
        assert progress.stage == DIRECT and progress.live_read is why and not progress.confirm_only
    assert h.queue.progress(BATCH, unknown).api_calls == 0.2  # its share of one read for five items
    assert redis_client.zcard(KEYS.checks(PRECHECK)) == 0


def test_confirmation_retries_with_growing_intervals_then_falls_back(redis_client: redis.Redis) -> None:
    h = harness(redis_client, chunk_size=10, gather_seconds=0.0, first_check_seconds=1.0, max_interval_seconds=4.0,
                timeout_seconds=10.0)
    late, soon = ids(2)
    for cid in (late, soon):
        h.queue.enter_confirm(BATCH, cid, patched=True, calls=1.0)
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
    assert progress.stage == DIRECT and progress.confirm_only and progress.patched  # confirm by a read, no PATCH


def test_failed_reads_back_off_then_send_items_to_the_direct_path(redis_client: redis.Redis) -> None:
    h = harness(redis_client, chunk_size=10, gather_seconds=0.0)
    [cid] = ids(1)
    h.queue.enter_precheck(BATCH, cid)
    h.rows = ServerError("boom", 503)
    for _ in range(MAX_READ_FAILURES):
        h.clock.now += 10
        assert h.pump.drain_ready() == 1
    assert h.published == [(BATCH, [cid])] and len(h.reads) == MAX_READ_FAILURES
    assert h.queue.progress(BATCH, cid).stage == DIRECT


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
        h.queue.enter_precheck(BATCH, cid)
    h.queue.set_stage(BATCH, to_patch, PATCH)
    h.queue.set_stage(BATCH, to_direct, DIRECT)
    assert h.pump.drain_ready() == 0 and not h.reads
    assert sorted(h.published) == sorted([(BATCH, [to_patch]), (BATCH, [to_direct])])
    assert redis_client.zcard(KEYS.checks(PRECHECK)) == 0


def test_stale_entries_are_dropped(redis_client: redis.Redis) -> None:
    h = harness(redis_client, gather_seconds=0.0)
    [cid] = ids(1)
    redis_client.zadd(KEYS.checks(CONFIRM), {f"{BATCH}:{cid}": 0, "garbage": 0, f"{BATCH}:not-an-id": 0})
    assert h.pump.drain_ready() == 0 and not h.reads  # nothing worth a read: no request
    assert redis_client.zcard(KEYS.checks(CONFIRM)) == 0


def test_a_confirmation_without_conversation_end_is_read(redis_client: redis.Redis) -> None:
    """Every segment ended but no conversationEnd: not analytics' documented word, so a read confirms."""
    h = harness(redis_client, chunk_size=10, gather_seconds=0.0)
    documented, inferred = ids(2)
    for cid in (documented, inferred):
        h.queue.enter_confirm(BATCH, cid, patched=True, calls=1.0)
    h.rows = [row(documented, ended=True), row(inferred, ended=True, conversation_end=False)]
    h.clock.now += 1.0
    assert h.pump.drain_ready() == 1
    assert [r.conversation_id for r in h.finished] == [documented] and h.finished[0].confirmed_by == "analytics"
    progress = h.queue.progress(BATCH, inferred)
    assert progress.stage == DIRECT and progress.confirm_only and progress.live_read is LiveRead.SEGMENTS_ONLY
