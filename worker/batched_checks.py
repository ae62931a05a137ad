"""Batched checks: batch items read many conversations per API call instead of one each.

The direct path costs 3 calls per close (GET, PATCH, confirming GET). A batch item on the batched path costs the
PATCH plus its share of two analytics reads by id (``GET /api/v2/analytics/conversations/details?id=...``, up to
``ANALYTICS_CHUNK_SIZE`` conversations per call)::

    item task ──> precheck set ──pump: one read per chunk──> open web messaging: PATCH task ──> confirm set
                                                      └───> looks ended, not (visibly) web messaging, unknown to
                                                            analytics: direct path (its GET decides)
    confirm set ──pump: one read per chunk──> conversationEnd: a sample read live (worker.analytics_trust), then
                                               closed | direct path (disagreed, distrusted)
                                      └───> segments ended without conversationEnd: direct path (a read confirms)
    confirm set: not ended after CONFIRM_ANALYTICS_TIMEOUT_SECONDS ──> direct path (a read of the conversation)

Analytics never decides an outcome alone (``closing.analytics_state``): it can send an item to the PATCH or save a
confirming read, but ``already_closed`` and ``not_web_messaging`` come from a read of the conversation, and
``closed`` from analytics' ``conversationEnd`` only as a sampled confirmation.

Where each item is lives in Redis, never only in a process: the stage in the item's progress hash (which also
sums its calls, a chunk read counting as its share) and its due time in a fleet-wide sorted set per stage. The
pump is a Celery task that holds a lock while it drains both sets; it is sent whenever an item becomes due and no
pump is on its way, sends itself again (with a countdown) while items wait, and the recovery check sends one when
items are overdue. A SIGKILL loses nothing: the lock expires, items stay in their sets, a re-driven item task
sees its stage and carries on from there.
"""

from __future__ import annotations

import json
import logging
import time
import uuid
from collections.abc import Callable
from dataclasses import dataclass
from typing import Any

import redis

from genesys_closer.config.redis_keys import KEYS
from genesys_closer.config.settings import WorkerSettings
from genesys_closer.worker.analytics_trust import ConfirmVerifier, LiveRead, Settlement, TrustMode, Verified
from genesys_closer.worker.batches import BatchWriter
from genesys_closer.worker.closing.analytics_state import (
    ConfirmStep,
    PrecheckStep,
    confirm_step,
    precheck_step,
    row_ended,
    row_participant_states,
    row_pending_wrapups,
)
from genesys_closer.worker.closing.conversation_state import pending_wrapups
from genesys_closer.worker.closing.options import CloseOptions, OptionLimits
from genesys_closer.worker.closing.outcomes import (
    CONFIRMED_BY_ANALYTICS,
    CONFIRMED_BY_SAMPLE,
    CloseResult,
    Outcome,
    summarize_participants,
)
from genesys_closer.worker.genesys.client import CallTally, GenesysClient
from genesys_closer.worker.genesys.errors import InvalidConversationId, PermanentError, RetryableError
from genesys_closer.worker.genesys.ids import parse_conversation_id
from genesys_closer.worker.genesys.lanes import INTERACTIVE, lane
from genesys_closer.worker.genesys.locks import OwnedLock
from genesys_closer.worker.genesys.redis_connection import text
from genesys_closer.worker.names import QUEUE_BULK
from genesys_closer.worker.results import is_batch_id

log = logging.getLogger("genesys_closer.worker")
PRECHECK, PATCH, CONFIRM, DIRECT = "precheck", "patch", "confirm", "direct"
PROGRESS_TTL_SECONDS = 86_400
LOCK_SECONDS = 15.0  # extended after every read: a pump that died holds up the others at most this long
PUMP_BUDGET_SECONDS = 20.0  # a pump run ends (and sends the next) well inside the task's soft time limit
STAY_FOR_SECONDS = 1.0  # the pump waits in place for items due this soon; later ones get a pump with a countdown
SLACK_SECONDS = 0.5
MAX_READ_FAILURES = 3  # failed batched reads before an item takes the direct path
KICK_GRACE_SECONDS = 10.0  # a pump not started this long after its time was lost: the next item sends another
Retrying = Callable[[Callable[[], Any]], Any]


@dataclass(frozen=True)
class CheckTiming:
    chunk_size: int = 100
    gather_seconds: float = 5.0  # how long a due item may wait for others to share its read
    first_check_seconds: float = 1.0
    max_interval_seconds: float = 5.0
    timeout_seconds: float = 60.0

    @classmethod
    def from_settings(cls, settings: WorkerSettings) -> CheckTiming:
        return cls(settings.analytics_chunk_size, settings.batched_gather_seconds,
                   settings.confirm_analytics_first_check_seconds, settings.confirm_analytics_max_interval_seconds,
                   settings.confirm_analytics_timeout_seconds)

    @property
    def min_chunk(self) -> int:
        """A read is made at once for this many due items (a fifth of a chunk): a read's share per item then stays
        at most 5% of a call at any rate, and a slower stream of items waits at most ``gather_seconds``."""
        return max(1, self.chunk_size // 5)

    def next_check(self, since_patch: float) -> float:
        """Seconds until the next confirmation read of an item patched ``since_patch`` seconds ago."""
        return min(max(since_patch / 2, self.first_check_seconds, 0.2), self.max_interval_seconds)


def item_token(batch_id: str, conversation_id: str) -> str:
    return f"{batch_id}:{conversation_id}"


def parse_token(token: str) -> tuple[str, str] | None:
    batch_id, _, conversation_id = token.partition(":")
    if not is_batch_id(batch_id):
        return None
    try:
        return batch_id, parse_conversation_id(conversation_id)
    except InvalidConversationId:
        return None


@dataclass
class Progress:
    """An item's progress hash (``KEYS.progress``): its stage, whether a PATCH of ours went out, its calls so far."""

    stage: str | None = None
    patched: bool = False
    patched_at: float | None = None
    api_calls: float = 0.0
    confirm_only: bool = False  # the direct path only confirms (our PATCH was taken; analytics did not show it)
    live_read: LiveRead | None = None  # why the direct path reads it instead of trusting analytics
    answer_open: bool = False  # the PATCH's answer did not show the conversation ended: its confirmation is verified

    @classmethod
    def parse(cls, raw: dict[Any, Any]) -> Progress:
        fields = {text(k): text(v) for k, v in raw.items()}
        live = fields.get("live_read")
        return cls(stage=fields.get("stage"), patched=fields.get("patched") == "1",
                   patched_at=float(fields["patched_at"]) if "patched_at" in fields else None,
                   api_calls=float(fields.get("api_calls") or 0), confirm_only=fields.get("confirm_only") == "1",
                   live_read=LiveRead(live) if live in set(LiveRead) else None,
                   answer_open=fields.get("answer_open") == "1")


class CheckQueue:
    """The Redis side of batched checks: the stage sets, item progress and sending the pump."""

    def __init__(self, client: redis.Redis, timing: CheckTiming, send_pump: Callable[[float], None],
                 clock: Callable[[], float] = time.time) -> None:
        self.redis = client
        self.timing = timing
        self.send_pump = send_pump
        self.clock = clock

    def progress(self, batch_id: str, conversation_id: str) -> Progress:
        return Progress.parse(self.redis.hgetall(KEYS.progress(conversation_id, batch_id)))

    def set_stage(self, batch_id: str, conversation_id: str, stage: str, *, add_calls: float = 0.0,
                  due_at: float | None = None, fields: dict[str, str] | None = None) -> None:
        """Move an item to ``stage`` (adding ``add_calls`` to its calls); with ``due_at`` it joins that stage's set
        (an item already there keeps its place)."""
        self.set_stages([(batch_id, conversation_id)], stage, add_calls=add_calls, due_at=due_at, fields=fields)

    def set_stages(self, items: list[tuple[str, str]], stage: str, *, add_calls: float = 0.0,
                   due_at: float | None = None, fields: dict[str, str] | None = None) -> None:
        """``set_stage`` for (batch id, conversation id) pairs, in one transaction."""
        pipe = self.redis.pipeline(transaction=True)
        mapping: dict[str, str] = {"stage": stage, **(fields or {})}
        for batch_id, conversation_id in items:
            key = KEYS.progress(conversation_id, batch_id)
            pipe.hset(key, mapping=mapping)  # type: ignore[arg-type]
            if add_calls:
                pipe.hincrbyfloat(key, "api_calls", add_calls)
            pipe.expire(key, PROGRESS_TTL_SECONDS)
            if due_at is not None:
                pipe.zadd(KEYS.checks(stage), {item_token(batch_id, conversation_id): due_at}, nx=True)
        pipe.execute()
        if due_at is not None and not self.redis.exists(KEYS.checks("lock")):
            # A running pump sees these items (they joined their set before the lock was checked) and sends the next
            # pump when it lets go: no pump is sent while one runs.
            ready_at = self.next_ready()
            self.kick(due_at + self.timing.gather_seconds if ready_at is None else ready_at)

    def enter_precheck(self, batch_id: str, conversation_id: str) -> None:
        self.set_stage(batch_id, conversation_id, PRECHECK, due_at=self.clock())

    def enter_confirm(self, batch_id: str, conversation_id: str, *, patched: bool, calls: float,
                      answer_open: bool = False) -> None:
        now = self.clock()
        self.set_stage(batch_id, conversation_id, CONFIRM, add_calls=calls,
                       due_at=now + self.timing.first_check_seconds,
                       fields={"patched": "1" if patched else "0", "patched_at": repr(now),
                               "answer_open": "1" if answer_open else "0"})

    def rejoin(self, batch_id: str, conversation_id: str, stage: str) -> None:
        """A re-driven item task found its item waiting in ``stage``: make sure it is in that stage's set."""
        self.redis.zadd(KEYS.checks(stage), {item_token(batch_id, conversation_id): self.clock()}, nx=True)
        if not self.redis.exists(KEYS.checks("lock")):
            self.kick(self.clock() + self.timing.gather_seconds)

    # -- the pump's schedule -----------------------------------------------------------------------------------
    def next_ready(self) -> float | None:
        """When the pump next has a read to make: as soon as ``min_chunk`` items are due, or when the oldest due item
        has waited ``gather_seconds`` for company. None when both sets are empty. One round trip."""
        pipe = self.redis.pipeline(transaction=False)
        for stage in (PRECHECK, CONFIRM):
            pipe.zrange(KEYS.checks(stage), 0, 0, withscores=True)
            pipe.zrange(KEYS.checks(stage), self.timing.min_chunk - 1, self.timing.min_chunk - 1, withscores=True)
        first_pre, enough_pre, first_confirm, enough_confirm = pipe.execute()
        times = [float(first[0][1]) + self.timing.gather_seconds for first in (first_pre, first_confirm) if first]
        times += [float(enough[0][1]) for enough in (enough_pre, enough_confirm) if enough]
        return min(times) if times else None

    def arrived(self) -> None:
        """A pump has started: the one sent for now (or earlier) is no longer on its way."""
        scheduled = self.redis.get(KEYS.checks("kick"))
        if scheduled is not None and float(text(scheduled)) <= self.clock() + SLACK_SECONDS:
            self.redis.delete(KEYS.checks("kick"))

    def kick(self, ready_at: float) -> None:
        """Make sure a pump runs by ``ready_at``: send one unless one is already due by then."""
        scheduled = self.redis.get(KEYS.checks("kick"))
        if scheduled is not None and float(text(scheduled)) <= ready_at + SLACK_SECONDS:
            return
        countdown = max(0.0, ready_at - self.clock())
        self.redis.set(KEYS.checks("kick"), repr(ready_at), px=int((countdown + KICK_GRACE_SECONDS) * 1000))
        self.send_pump(countdown)

    def kick_if_overdue(self, grace_seconds: float = 5.0) -> bool:
        """The recovery check's part: send a pump when items are overdue and none runs (its task was lost)."""
        ready_at = self.next_ready()
        if ready_at is None or ready_at > self.clock() - grace_seconds or self.redis.exists(KEYS.checks("lock")):
            return False
        self.redis.delete(KEYS.checks("kick"))
        self.kick(self.clock())
        return True


class CheckPump:
    """Drains the stage sets: one analytics read per chunk of due items, then each item's next step."""

    def __init__(self, queue: CheckQueue, client: GenesysClient, retrying: Retrying, batches: BatchWriter,
                 finish: Callable[[CloseResult], object], default_options: CloseOptions, limits: OptionLimits,
                 *, budget_seconds: float = PUMP_BUDGET_SECONDS, sleep: Callable[[float], None] = time.sleep,
                 verifier: ConfirmVerifier | None = None) -> None:
        self.budget_seconds = budget_seconds
        self.verifier = verifier
        self.queue = queue
        self.redis = queue.redis
        self.timing = queue.timing
        self.clock = queue.clock
        self.client = client
        self.retrying = retrying
        self.batches = batches
        self.finish = finish
        self.default_options = default_options
        self.limits = limits
        self.sleep = sleep

    def run(self, budget_seconds: float | None = None) -> int:
        """Drain while items are ready (at most ``budget_seconds``, by default well inside the task's soft time
        limit); returns the number of reads made. Whatever happens, a pump is sent for the items still waiting."""
        budget_seconds = self.budget_seconds if budget_seconds is None else budget_seconds
        self.queue.arrived()
        lock = OwnedLock(self.redis, KEYS.checks("lock"), LOCK_SECONDS)
        if not lock.acquire(uuid.uuid4().hex):
            # The holder sends the next pump when it lets go; should it have died, this one comes when its lock
            # expires.
            held_for = self.redis.pttl(KEYS.checks("lock"))
            self.queue.kick(self.clock() + max(int(held_for), 100) / 1000)
            return 0
        reads = 0
        try:
            deadline = self.clock() + budget_seconds
            while self.clock() < deadline:
                reads += self.drain_ready(lock)
                ready_at = self.queue.next_ready()
                if ready_at is None or ready_at - self.clock() > STAY_FOR_SECONDS:
                    break
                lock.extend()
                self.sleep(max(0.05, ready_at - self.clock()))
        finally:
            lock.release()
            ready_at = self.queue.next_ready()
            if ready_at is not None:
                self.queue.kick(ready_at)
        return reads

    def drain_ready(self, lock: OwnedLock | None = None) -> int:
        reads = 0
        for stage in (PRECHECK, CONFIRM):
            tokens = self._ready(stage)
            if tokens and self._check(stage, tokens):
                reads += 1
                if lock is not None:
                    lock.extend()
        return reads

    def _ready(self, stage: str) -> list[str]:
        key = KEYS.checks(stage)
        now = self.clock()
        due = self.redis.zrangebyscore(key, "-inf", now, start=0, num=self.timing.chunk_size, withscores=True)
        if not due:
            return []
        if len(due) < self.timing.min_chunk and float(due[0][1]) + self.timing.gather_seconds > now:
            return []
        return [text(entry[0]) for entry in due]

    # -- one read for a chunk of items -------------------------------------------------------------------------
    def _check(self, stage: str, tokens: list[str]) -> bool:
        """One read for these items and each item's next step; False when none of them needed a read."""
        items: list[tuple[str, str, str, Progress]] = []
        pipe = self.redis.pipeline(transaction=False)
        parsed = [(token, parse_token(token)) for token in tokens]
        for _, pair in parsed:
            if pair is not None:
                pipe.hgetall(KEYS.progress(pair[1], pair[0]))
        progresses = iter(pipe.execute())
        stale, handed_off = [], []
        for token, pair in parsed:
            progress = Progress.parse(next(progresses)) if pair is not None else None
            if pair is None or progress is None:
                stale.append(token)  # malformed, or finished
            elif progress.stage == stage:
                items.append((token, pair[0], pair[1], progress))
            elif progress.stage in (PATCH, DIRECT):
                handed_off.append((token, pair[0], pair[1], progress))  # a pump died between its stage and its task
            else:
                stale.append(token)  # it moved on (re-driven)
        if stale:
            self.redis.zrem(KEYS.checks(stage), *stale)
        batches = {batch_id: self._batch(batch_id) for batch_id in {item[1] for item in [*items, *handed_off]}}
        for next_stage in (PATCH, DIRECT):  # sent again: a second copy of a task finds its stage moved on
            self._send(stage, next_stage, [item for item in handed_off if item[3].stage == next_stage], 0.0, batches)
        if not items:
            return False
        if stage == PRECHECK:
            stopped = [item for item in items if batches[item[1]][0] is not None]
            self._to_direct(PRECHECK, stopped, 0.0, batches)  # the task records cancelled/not_attempted
            items = [item for item in items if batches[item[1]][0] is None]
            if not items:
                return False
        ids = list(dict.fromkeys(cid for _, _, cid, _ in items))
        tally = CallTally()
        try:
            with lane(INTERACTIVE):  # one read serves a whole chunk: it goes ahead of bulk PATCHes
                rows = self.retrying(lambda: self.client.get_analytics_conversations(ids, tally))
        except RetryableError as exc:
            self._read_failed(stage, items, exc, tally.api_calls / len(ids), batches)
            return True
        except PermanentError as exc:
            log.warning("batched %s read refused (%s): %d item(s) take the direct path; check the OAuth client's "
                        "analytics permission and ANALYTICS_CHUNK_SIZE", stage, exc, len(items))
            self._to_direct(stage, items, tally.api_calls / len(ids), batches)
            return True
        share = tally.api_calls / len(ids)
        by_id = {row.get("conversationId"): row for row in rows}
        if stage == PRECHECK:
            self._after_precheck(items, by_id, share, batches)
        else:
            self._after_confirm(items, by_id, share, batches)
        return True

    def _read_failed(self, stage: str, items: list[tuple[str, str, str, Progress]], exc: RetryableError,
                     share: float, batches: dict[str, Any]) -> None:
        """A read that failed after its inline retries: the items wait (with backoff) for the next one, and after
        ``MAX_READ_FAILURES`` take the direct path, whose retry budget and outcomes apply to them."""
        pipe = self.redis.pipeline(transaction=False)
        for _, batch_id, cid, _ in items:
            pipe.hincrby(KEYS.progress(cid, batch_id), "read_failures", 1)
            pipe.hincrbyfloat(KEYS.progress(cid, batch_id), "api_calls", share)
        failures = pipe.execute()[::2]
        given_up = [item for item, count in zip(items, failures, strict=True) if count >= MAX_READ_FAILURES]
        waiting = {item[0]: self.clock() + max(exc.retry_after_seconds or 0.0, float(count))
                   for item, count in zip(items, failures, strict=True) if count < MAX_READ_FAILURES}
        if waiting:
            self.redis.zadd(KEYS.checks(stage), waiting, xx=True)
        log.info("batched %s read failed (%s): %d item(s) wait for the next read, %d take the direct path",
                 stage, exc, len(waiting), len(given_up))
        self._to_direct(stage, given_up, 0.0, batches)

    def _batch(self, batch_id: str) -> tuple[str | None, CloseOptions | None, dict[str, Any], str]:
        """(why its items are not attempted any more or None, its close options, raw options, queue)."""
        state, raw_options, queue = (None if v is None else text(v) for v in self.redis.hmget(
            KEYS.batch(batch_id), ["state", "options", "queue"]))
        stop = state if state in {"cancelled", "stopped"} else None
        try:
            overrides = json.loads(raw_options or "{}")
            options: CloseOptions | None = self.default_options.with_overrides(overrides, self.limits)
        except ValueError:
            overrides, options = {}, None  # the item task refuses it (invalid_request)
        return stop, options, overrides if isinstance(overrides, dict) else {}, queue or QUEUE_BULK

    def _after_precheck(self, items: list[tuple[str, str, str, Progress]], by_id: dict[Any, dict[str, Any]],
                        share: float, batches: dict[str, Any]) -> None:
        """Open, visibly web messaging rows go to the PATCH; every other item to the direct path, whose read of the
        conversation decides (analytics never ends an item already_closed or not_web_messaging by itself)."""
        patch: list[tuple[str, str, str, Progress]] = []
        live: dict[LiveRead | None, list[tuple[str, str, str, Progress]]] = {}
        for item in items:
            row, options = by_id.get(item[2]), batches[item[1]][1]
            if options is None:
                live.setdefault(None, []).append(item)  # the task refuses its options (invalid_request)
                continue
            step = precheck_step(row, allow_other_message_types=options.allow_other_message_types)
            if step is PrecheckStep.PATCH:
                patch.append(item)
            elif step is PrecheckStep.NOT_IN_ANALYTICS or row is None:
                live.setdefault(None, []).append(item)  # not known to analytics yet
            else:
                why = LiveRead.LOOKED_ENDED if row_ended(row) else LiveRead.NOT_VISIBLY_WEB
                live.setdefault(why, []).append(item)
        self._send(PRECHECK, PATCH, patch, share, batches)
        for reason, group in live.items():
            self._send(PRECHECK, DIRECT, group, share, batches,
                       None if reason is None else {"live_read": reason.value})

    def _after_confirm(self, items: list[tuple[str, str, str, Progress]], by_id: dict[Any, dict[str, Any]],
                       share: float, batches: dict[str, Any]) -> None:
        now = self.clock()
        late, later = [], {}  # later: token -> (batch id, conversation id, next read)
        ended: dict[str, tuple[str, str, str, Progress]] = {}
        segments_only = []
        for item in items:
            token, batch_id, cid, progress = item
            row = by_id.get(cid)
            since = now - (progress.patched_at or now)
            step = confirm_step(row)
            if step is ConfirmStep.ENDED:
                ended[token] = item
            elif step is ConfirmStep.READ_LIVE:
                segments_only.append(item)  # every segment ended, no conversationEnd: a read decides
            elif since >= self.timing.timeout_seconds:
                late.append(item)  # the direct path reads the conversation (and escalates per policy)
            else:
                later[token] = (batch_id, cid, now + self.timing.next_check(since))
        verified = self._verify(ended)
        settled = verified.settlement
        for token in settled.by_analytics:
            _, batch_id, cid, progress = ended[token]
            self._finished(CONFIRM, token, self._confirmed(cid, batch_id, progress, share, by_id[cid], now))
        for token in settled.verified:
            _, batch_id, cid, progress = ended[token]
            result = self._confirmed(cid, batch_id, progress, share + verified.calls[token], by_id[cid], now)
            conversation = verified.reads[token]
            result.confirmed_by, result.participant_states = CONFIRMED_BY_SAMPLE, summarize_participants(conversation)
            result.wrapups_pending = len(pending_wrapups(conversation))
            self._finished(CONFIRM, token, result)
        for token in settled.wait:
            _, batch_id, cid, progress = ended[token]
            later[token] = (batch_id, cid, now + self.timing.next_check(now - (progress.patched_at or now)))
        if later:
            pipe = self.redis.pipeline(transaction=False)
            for batch_id, cid, _ in later.values():
                pipe.hincrbyfloat(KEYS.progress(cid, batch_id), "api_calls", share)
            pipe.zadd(KEYS.checks(CONFIRM), {token: due for token, (_, _, due) in later.items()}, xx=True)
            pipe.execute()
        confirm_only = {"confirm_only": "1"}
        self._send(CONFIRM, DIRECT, late, share, batches, confirm_only)
        self._send(CONFIRM, DIRECT, segments_only, share, batches,
                   {**confirm_only, "live_read": LiveRead.SEGMENTS_ONLY.value})
        for tokens, why in ((settled.disagreed, LiveRead.DISAGREED), (settled.read_live, LiveRead.DISTRUSTED)):
            group = [ended[token] for token in tokens]
            self._add_calls({ended[t][1:3]: verified.calls[t] for t in tokens if t in verified.calls})
            self._send(CONFIRM, DIRECT, group, share, batches, {**confirm_only, "live_read": why.value})

    def _verify(self, ended: dict[str, tuple[str, str, str, Progress]]) -> Verified:
        """Sample the items analytics shows ended against the live conversation (all of them settle by analytics
        when no verifier is configured)."""
        if self.verifier is None:
            return Verified(TrustMode.TRUSTED, Settlement(by_analytics=list(ended)))
        return self.verifier.verify({token: item[2] for token, item in ended.items()},
                                    {token for token, item in ended.items() if item[3].answer_open})

    def _add_calls(self, calls: dict[tuple[str, str], float]) -> None:
        if calls:
            pipe = self.redis.pipeline(transaction=False)
            for (batch_id, cid), count in calls.items():
                pipe.hincrbyfloat(KEYS.progress(cid, batch_id), "api_calls", count)
            pipe.execute()

    def _confirmed(self, cid: str, batch_id: str, progress: Progress, share: float, row: dict[str, Any],
                   now: float) -> CloseResult:
        outcome = Outcome.CLOSED if progress.patched else Outcome.ALREADY_CLOSED
        result = self._result(cid, batch_id, outcome, progress, share, row)
        result.action, result.confirm_seconds = "patch", round(now - (progress.patched_at or now), 4)
        return result

    @staticmethod
    def _result(cid: str, batch_id: str, outcome: Outcome, progress: Progress, share: float,
                row: dict[str, Any]) -> CloseResult:
        now = time.time()
        return CloseResult(cid, outcome, api_calls=progress.api_calls + share, started_at=now, finished_at=now,
                           participant_states=row_participant_states(row),
                           wrapups_pending=row_pending_wrapups(row) if outcome.succeeded else 0,
                           confirmed_by=CONFIRMED_BY_ANALYTICS, batch_id=batch_id)

    def _finished(self, stage: str, token: str, result: CloseResult) -> None:
        """Record the outcome first, then forget the item: a crash in between only repeats a (counted-once) record."""
        self.finish(result)
        pipe = self.redis.pipeline(transaction=False)
        pipe.delete(KEYS.progress(result.conversation_id, result.batch_id))
        pipe.zrem(KEYS.checks(stage), token)
        pipe.execute()

    def _to_direct(self, stage: str, items: list[tuple[str, str, str, Progress]], share: float,
                   batches: dict[str, Any]) -> None:
        self._send(stage, DIRECT, items, share, batches)

    def _send(self, stage: str, next_stage: str, items: list[tuple[str, str, str, Progress]], share: float,
              batches: dict[str, Any], fields: dict[str, str] | None = None) -> None:
        """Move items to ``next_stage`` and send each a close task (it runs that stage), grouped by batch."""
        if not items:
            return
        self.queue.set_stages([(batch_id, cid) for _, batch_id, cid, _ in items], next_stage, add_calls=share,
                              fields=fields)
        by_batch: dict[str, list[str]] = {}
        for _, batch_id, cid, _ in items:
            by_batch.setdefault(batch_id, []).append(cid)
        for batch_id, cids in by_batch.items():
            _, _, overrides, queue = batches[batch_id]
            self.batches.publish(batch_id, cids, overrides, queue)
        # Left last: after a crash before this, the next pump finds these items handed off and sends them again.
        self.redis.zrem(KEYS.checks(stage), *(item[0] for item in items))
