"""Batched checks: batch items read many conversations per API call instead of one each.

The direct path costs 3 calls per close (GET, PATCH, confirming GET). A batch item on the batched path costs the
PATCH plus its share of two analytics reads by id (``GET /api/v2/analytics/conversations/details?id=...``, up to
``ANALYTICS_CHUNK_SIZE`` conversations per call). The item's stages and every decision between them are in
``worker.checks.item_lifecycle`` (``Stage``, ``next_step``); this module is their Redis side and the pump that makes the
reads and carries out what ``next_step`` decides.

Where each item is lives in Redis, never only in a process: the stage in the item's progress hash
(``worker.checks.item_progress``, which also sums its calls, a chunk read counting as its share) and its due time in a
fleet-wide sorted set per waiting stage. The pump is a Celery task that holds a lock while it drains both sets, and
stops as soon as it cannot extend that lock (another pump may then hold it). A pump is sent whenever an item becomes
due and none is on its way (one Lua script decides and marks it, so concurrent callers send one); it sends itself
again (with a countdown) while items wait, and the recovery check sends one when items are overdue. A SIGKILL
loses nothing: the lock expires, items stay in their sets, a re-driven item task sees its stage and carries on.

Analytics never decides an outcome alone (issue 18): of the items a confirmation read shows ended, the pump reads a
sample live before any is recorded (``worker.checks.analytics_trust.ConfirmVerifier``) and each item's ``AnalyticsRow``
says how its sample came out; ``next_step`` decides from that.
"""

from __future__ import annotations

import json
import logging
import time
import uuid
from collections.abc import Callable, Iterable, Sequence
from dataclasses import dataclass, replace
from typing import Any

import redis

from genesys_closer.config.redis_keys import KEYS, RedisKeys
from genesys_closer.shared.batches import BatchWriter
from genesys_closer.shared.ids import InvalidConversationId, parse_conversation_id
from genesys_closer.shared.lanes import INTERACTIVE, lane
from genesys_closer.shared.locks import OwnedLock
from genesys_closer.shared.names import QUEUE_BULK
from genesys_closer.shared.options import CloseOptions, OptionLimits
from genesys_closer.shared.outcomes import CONFIRMED_BY_ANALYTICS, CloseResult, summarize_participants
from genesys_closer.shared.redis_connection import register_lua, text
from genesys_closer.shared.stores.batch_state import ENDING_STATES
from genesys_closer.shared.stores.batch_store import is_batch_id
from genesys_closer.worker.checks.analytics_trust import ConfirmVerifier, Settlement, TrustMode, Verified
from genesys_closer.worker.checks.item_lifecycle import (
    WAITING_STAGES,
    AnalyticsRow,
    BatchStopped,
    CheckTiming,
    Decision,
    Drop,
    Finish,
    Hand,
    Ignore,
    Item,
    ItemRef,
    Listed,
    LiveRead,
    NotInAnalytics,
    Observation,
    Progress,
    Read,
    ReadFailed,
    ReadRefused,
    Settled,
    Stage,
    Wait,
    next_step,
)
from genesys_closer.worker.checks.item_progress import ItemProgress
from genesys_closer.worker.closing.analytics_state import (
    row_confirms_end,
    row_participant_states,
    row_pending_wrapups,
)
from genesys_closer.worker.closing.conversation_state import pending_wrapups
from genesys_closer.worker.genesys.client import CallTally, GenesysClient
from genesys_closer.worker.genesys.errors import PermanentError, RetryableError

log = logging.getLogger("genesys_closer.worker")
LOCK_SECONDS = 15.0  # extended before every read: a pump that died holds up the others at most this long
PUMP_BUDGET_SECONDS = 20.0  # a pump run ends (and sends the next) well inside the task's soft time limit
STAY_FOR_SECONDS = 1.0  # the pump waits in place for items due this soon; later ones get a pump with a countdown
SLACK_SECONDS = 0.5
KICK_GRACE_SECONDS = 10.0  # a pump not started this long after its time was lost: the next item sends another
SETTLED = {"by_analytics": Settled.BY_ANALYTICS, "verified": Settled.VERIFIED, "disagreed": Settled.DISAGREED,
           "read_live": Settled.READ_LIVE, "wait": Settled.WAIT}  # analytics_trust.Settlement's lists
Retrying = Callable[[Callable[[], Any]], Any]


def parse_token(token: str) -> ItemRef | None:
    """The item a stage-set entry names; None when it is malformed."""
    batch_id, _, conversation_id = token.partition(":")
    if not is_batch_id(batch_id):
        return None
    try:
        return ItemRef(batch_id, parse_conversation_id(conversation_id))
    except InvalidConversationId:
        return None


@dataclass(frozen=True)
class BatchView:
    """What the pump needs of an item's batch."""

    stop_reason: str | None  # why its items are not attempted any more (its state), or None
    options: CloseOptions | None  # its close options; None when they do not parse (the item task refuses them)
    overrides: dict[str, Any]  # its raw options, sent with its items' tasks
    queue: str


@dataclass(frozen=True)
class Due:
    """An entry of a stage set (``token``, as stored) and the item it names."""

    token: str
    item: Item

    @property
    def ref(self) -> ItemRef:
        return self.item.ref


class CheckQueue:
    """The Redis side of batched checks: the stage sets, moving items between stages, and sending the pump."""

    def __init__(self, client: redis.Redis, timing: CheckTiming, send_pump: Callable[[float], None],
                 clock: Callable[[], float] = time.time, *, keys: RedisKeys = KEYS) -> None:
        self.redis = client
        self.keys = keys
        self.timing = timing
        self.send_pump = send_pump
        self.clock = clock
        self.items = ItemProgress(client, keys=keys)
        self._kick = register_lua(client, "checks_kick.lua")
        self._arrived = register_lua(client, "checks_arrived.lua")

    def progress(self, batch_id: str, conversation_id: str) -> Progress:
        return self.items.read(ItemRef(batch_id, conversation_id))

    def join(self, refs: list[ItemRef], stage: Stage, due_at: float, *, add_calls: float = 0.0,
             patched: bool | None = None, answer_open: bool = False, task_id: str | None = None) -> None:
        """Move items to the waiting ``stage`` and into its set, due at ``due_at`` (an item already there keeps its
        place). ``patched`` not None: our PATCH's answer, and the confirmation clock starts now (``answer_open``:
        the answer did not show the conversation ended). ``task_id``: the close task that waits (its end in Flower
        is the outcome the pump records)."""
        pipe = self.redis.pipeline(transaction=True)
        self.items.move(refs, stage, add_calls=add_calls, patched=patched,
                        patched_at=None if patched is None else self.clock(),
                        answer_open=None if patched is None else answer_open, task_id=task_id, pipe=pipe)
        pipe.zadd(self.keys.checks(stage.value), {ref.token: due_at for ref in refs}, nx=True)
        pipe.execute()
        if not self.redis.exists(self.keys.checks("lock")):
            # A running pump sees these items (they joined their set before the lock was checked) and sends the next
            # pump when it lets go: no pump is sent while one runs.
            ready_at = self.next_ready()
            self.kick(due_at + self.timing.gather_seconds if ready_at is None else ready_at)

    def move(self, refs: Iterable[ItemRef], stage: Stage, *, add_calls: float = 0.0,
             confirm_only: bool = False, live_read: LiveRead | None = None) -> None:
        """Move items to a stage their close task runs (``patch``, ``direct``), in one transaction."""
        pipe = self.redis.pipeline(transaction=True)
        self.items.move(refs, stage, add_calls=add_calls, confirm_only=confirm_only, live_read=live_read, pipe=pipe)
        pipe.execute()

    # -- the pump's schedule -----------------------------------------------------------------------------------
    def next_ready(self) -> float | None:
        """When the pump next has a read to make: as soon as ``min_chunk`` items are due, or when the oldest due item
        has waited ``gather_seconds`` for company. None when both sets are empty. One round trip."""
        pipe = self.redis.pipeline(transaction=False)
        for stage in WAITING_STAGES:
            pipe.zrange(self.keys.checks(stage.value), 0, 0, withscores=True)
            pipe.zrange(self.keys.checks(stage.value), self.timing.min_chunk - 1, self.timing.min_chunk - 1,
                        withscores=True)
        first_pre, enough_pre, first_confirm, enough_confirm = pipe.execute()
        times = [float(first[0][1]) + self.timing.gather_seconds for first in (first_pre, first_confirm) if first]
        times += [float(enough[0][1]) for enough in (enough_pre, enough_confirm) if enough]
        return min(times) if times else None

    def arrived(self) -> None:
        """A pump has started: the one sent for now (or earlier) is no longer on its way (one atomic step)."""
        self._arrived(keys=[self.keys.checks("kick")], args=[repr(self.clock() + SLACK_SECONDS)])

    def kick(self, ready_at: float) -> None:
        """Make sure a pump runs by ``ready_at``: send one unless one is already due by then. Deciding and marking
        is one atomic step, so of concurrent callers one sends it."""
        countdown = max(0.0, ready_at - self.clock())
        if self._kick(keys=[self.keys.checks("kick")], args=[repr(ready_at), repr(SLACK_SECONDS),
                                                        int((countdown + KICK_GRACE_SECONDS) * 1000)]):
            self.send_pump(countdown)

    def kick_if_overdue(self, grace_seconds: float = 5.0) -> bool:
        """The recovery check's part: send a pump when items are overdue and none runs (its task was lost)."""
        ready_at = self.next_ready()
        if ready_at is None or ready_at > self.clock() - grace_seconds or self.redis.exists(self.keys.checks("lock")):
            return False
        self.redis.delete(self.keys.checks("kick"))
        self.kick(self.clock())
        return True


class CheckPump:
    """Drains the stage sets: one analytics read per chunk of due items, then each item's ``next_step``."""

    def __init__(self, queue: CheckQueue, client: GenesysClient, retrying: Retrying, batches: BatchWriter,
                 finish: Callable[[CloseResult], object], default_options: CloseOptions, limits: OptionLimits,
                 *, budget_seconds: float = PUMP_BUDGET_SECONDS, sleep: Callable[[float], None] = time.sleep,
                 verifier: ConfirmVerifier | None = None,
                 report_ended: Callable[[list[tuple[str, dict[str, Any]]]], None] | None = None) -> None:
        self.budget_seconds = budget_seconds
        self.report_ended = report_ended
        self.verifier = verifier
        self.queue = queue
        self.redis = queue.redis
        self.keys = queue.keys
        self.items = queue.items
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
        limit) and the lock is ours; returns the number of reads made. Whatever happens, a pump is sent for the items
        still waiting unless another pump holds the lock (that one sends it)."""
        budget_seconds = self.budget_seconds if budget_seconds is None else budget_seconds
        self.queue.arrived()
        lock = OwnedLock(self.redis, self.keys.checks("lock"), LOCK_SECONDS)
        if not lock.acquire(uuid.uuid4().hex):
            # The holder sends the next pump when it lets go; should it have died, this one comes when its lock
            # expires.
            held_for = self.redis.pttl(self.keys.checks("lock"))
            self.queue.kick(self.clock() + max(int(held_for), 100) / 1000)
            return 0
        reads, held = 0, True
        try:
            deadline = self.clock() + budget_seconds
            while self.clock() < deadline:
                made, held = self._drain(lock)
                reads += made
                ready_at = self.queue.next_ready()
                if not held or ready_at is None or ready_at - self.clock() > STAY_FOR_SECONDS:
                    break
                if not lock.extend():
                    held = False
                    break
                self.sleep(max(0.05, ready_at - self.clock()))
        finally:
            released = lock.release()
            ready_at = self.queue.next_ready()
            if ready_at is not None and (released or lock.owner() is None):
                self.queue.kick(ready_at)
        if not held:
            log.warning("batched-checks pump lost its lock: it stopped draining after %d read(s)", reads)
        return reads

    def drain_ready(self) -> int:
        """One read per waiting stage with enough items due; returns the number of reads made."""
        return self._drain(None)[0]

    def _drain(self, lock: OwnedLock | None) -> tuple[int, bool]:
        """``drain_ready``, each read made only while ``lock`` (when given) can be extended: (reads made, whether
        the lock is still ours)."""
        reads = 0
        for stage in WAITING_STAGES:
            tokens = self._ready(stage)
            if not tokens:
                continue
            if lock is not None and not lock.extend():
                return reads, False
            if self._check(stage, tokens):
                reads += 1
        return reads, True

    def _ready(self, stage: Stage) -> list[str]:
        key = self.keys.checks(stage.value)
        now = self.clock()
        due = self.redis.zrangebyscore(key, "-inf", now, start=0, num=self.timing.chunk_size, withscores=True)
        if not due:
            return []
        if len(due) < self.timing.min_chunk and float(due[0][1]) + self.timing.gather_seconds > now:
            return []
        return [text(entry[0]) for entry in due]

    # -- one read for a chunk of items -------------------------------------------------------------------------
    def _check(self, stage: Stage, tokens: list[str]) -> bool:
        """One read for these items and each item's next step; False when none of them needed a read."""
        due, batches = self._due(stage, tokens)
        if not due:
            return False
        ids = list(dict.fromkeys(entry.ref.conversation_id for entry in due))
        tally = CallTally()
        try:
            with lane(INTERACTIVE):  # one read serves a whole chunk: it goes ahead of bulk PATCHes
                rows = self.retrying(lambda: self.client.get_analytics_conversations(ids, tally))
        except RetryableError as exc:
            failures = self.items.count_read_failure([entry.ref for entry in due], tally.api_calls / len(ids))
            decided = self._decide(due, [ReadFailed(count, exc.retry_after_seconds) for count in failures])
            log.info("batched %s read failed (%s): %d item(s) wait for the next read, %d take the direct path",
                     stage.value, exc, sum(isinstance(d, Wait) for _, d, _ in decided),
                     sum(isinstance(d, Hand) for _, d, _ in decided))
            self._carry_out(stage, decided, 0.0, batches)  # its share is counted with the failure
            return True
        except PermanentError as exc:
            log.warning("batched %s read refused (%s): %d item(s) take the direct path; check the OAuth client's "
                        "analytics permission and ANALYTICS_CHUNK_SIZE", stage.value, exc, len(due))
            self._carry_out(stage, self._decide(due, [ReadRefused()] * len(due)), tally.api_calls / len(ids), batches)
            return True
        at = self.clock()
        by_id = {row.get("conversationId"): row for row in rows}
        verified = self._verify(stage, due, by_id)
        settled = {token: SETTLED[kind] for kind, tokens in verified.settlement.by_kind().items() for token in tokens}
        observations: list[Observation] = []
        for entry in due:
            row = by_id.get(entry.ref.conversation_id)
            observations.append(NotInAnalytics(at) if row is None else AnalyticsRow.of(row, at,
                                                                                      settled.get(entry.token)))
        self._carry_out(stage, self._decide(due, observations), tally.api_calls / len(ids), batches, verified)
        return True

    def _verify(self, stage: Stage, due: list[Due], by_id: dict[Any, dict[str, Any]]) -> Verified:
        """Of the items a confirmation read shows ended (``conversationEnd``), read a sample live; every one of them
        is confirmed by analytics when no verifier is configured."""
        if stage is not Stage.CONFIRM:
            return Verified(TrustMode.TRUSTED, Settlement())
        ended = [entry for entry in due if row_confirms_end(by_id.get(entry.ref.conversation_id) or {})]
        if self.verifier is None:
            return Verified(TrustMode.TRUSTED, Settlement(by_analytics=[entry.token for entry in ended]))
        return self.verifier.verify({entry.token: entry.ref.conversation_id for entry in ended},
                                    {entry.token for entry in ended if entry.item.progress.answer_open})

    def _due(self, stage: Stage, tokens: list[str]) -> tuple[list[Due], dict[str, BatchView]]:
        """The entries of ``stage``'s set that need the read, and their batches. On the way, what is listed there
        without needing a read gets its next step: stale entries are dropped, items a dead pump handed off are sent
        again, and a stopped batch's items go to their task (which records why they are not attempted)."""
        parsed = [(token, parse_token(token)) for token in tokens]
        named = [(token, ref) for token, ref in parsed if ref is not None]
        progresses = self.items.read_many([ref for _, ref in named])
        entries = [Due(token, Item(ref, progress, None)) for (token, ref), progress in zip(named, progresses,
                                                                                         strict=True)]
        listed = self._decide(entries, [Listed(stage)] * len(entries))
        stale = [token for token, ref in parsed if ref is None]  # malformed
        stale += [entry.token for entry, decision, _ in listed if isinstance(decision, Drop)]  # finished, moved on
        if stale:
            self.redis.zrem(self.keys.checks(stage.value), *stale)
        listed = [(entry, decision, seen) for entry, decision, seen in listed if not isinstance(decision, Drop)]
        batches = {str(batch_id): self._batch(str(batch_id)) for batch_id in {e.ref.batch_id for e, _, _ in listed}}
        self._carry_out(stage, [(e, d, seen) for e, d, seen in listed if not isinstance(d, Read)], 0.0, batches)
        due = [replace(entry, item=replace(entry.item, options=batches[str(entry.ref.batch_id)].options))
               for entry, decision, _ in listed if isinstance(decision, Read)]
        stopping = [entry for entry in due if batches[str(entry.ref.batch_id)].stop_reason is not None]
        stopped = [(e, d, seen) for e, d, seen in self._decide(stopping, [BatchStopped()] * len(stopping))
                   if not isinstance(d, Ignore)]
        self._carry_out(stage, stopped, 0.0, batches)
        stopped_tokens = {entry.token for entry, _, _ in stopped}
        return [entry for entry in due if entry.token not in stopped_tokens], batches

    def _decide(self, entries: list[Due], observations: list[Observation]
                ) -> list[tuple[Due, Decision, Observation]]:
        return [(entry, next_step(entry.item, observation, self.timing), observation)
                for entry, observation in zip(entries, observations, strict=True)]

    def _carry_out(self, stage: Stage, decided: Sequence[tuple[Due, Decision, Observation | None]], share: float,
                   batches: dict[str, BatchView], verified: Verified | None = None) -> None:
        """Do what ``next_step`` decided for items of ``stage``'s set, each kind of decision in one round trip;
        ``share`` is each item's share of the read they came from (not yet counted), ``verified`` the live reads
        of its sample (their calls are the sampled items' own)."""
        reads = verified.reads if verified is not None else {}
        sampled = verified.calls if verified is not None else {}
        handed: dict[tuple[Stage, bool, LiveRead | None], list[Due]] = {}
        waiting: dict[str, tuple[ItemRef, float]] = {}  # token -> (item, next read)
        ended: list[tuple[str, dict[str, Any]]] = []  # (the close task that waited, its item's outcome record)
        now = self.clock()
        for entry, decision, observation in decided:
            match decision:
                case Finish():
                    row = observation.row if isinstance(observation, AnalyticsRow) else {}
                    result = self._result(entry, decision, share + sampled.get(entry.token, 0.0), row)
                    if entry.token in reads:  # its sampled read of the conversation says more than the row
                        result.participant_states = summarize_participants(reads[entry.token])
                        result.wrapups_pending = len(pending_wrapups(reads[entry.token]))
                    self._finished(stage, entry, result)
                    if entry.item.progress.task_id is not None:
                        ended.append((entry.item.progress.task_id, result.as_dict()))
                case Hand(stage=to, confirm_only=confirm_only, live_read=live_read):
                    handed.setdefault((to, confirm_only, live_read), []).append(entry)
                case Wait(due_in_seconds=due_in):
                    waiting[entry.token] = (entry.ref, now + due_in)
                case Ignore():
                    pass
                case _:
                    raise TypeError(f"the pump cannot carry out {decision!r} for an item in {stage.value}")
        if ended and self.report_ended is not None:
            self.report_ended(ended)  # after the records: a task shows SUCCESS only once its outcome is recorded
        unfinished = {entry.ref: sampled[entry.token] for entry, decision, _ in decided
                      if entry.token in sampled and not isinstance(decision, Finish)}
        if unfinished:
            self.items.add_calls(unfinished)  # a sampled read of an item that goes on
        for (to, confirm_only, live_read), entries in handed.items():
            self._hand(stage, to, entries, share, batches, confirm_only, live_read)
        if waiting:
            pipe = self.redis.pipeline(transaction=False)
            if share:
                self.items.add_calls({ref: share for ref, _ in waiting.values()}, pipe=pipe)
            pipe.zadd(self.keys.checks(stage.value), {token: due for token, (_, due) in waiting.items()}, xx=True)
            pipe.execute()

    def _batch(self, batch_id: str) -> BatchView:
        state, raw_options, queue = (None if v is None else text(v) for v in self.redis.hmget(
            self.keys.batch(batch_id), ["state", "options", "queue"]))
        try:
            overrides = json.loads(raw_options or "{}")
            options: CloseOptions | None = self.default_options.with_overrides(overrides, self.limits)
        except ValueError:
            overrides, options = {}, None  # the item task refuses it (invalid_request)
        return BatchView(stop_reason=state if state in ENDING_STATES else None, options=options,
                         overrides=overrides if isinstance(overrides, dict) else {}, queue=queue or QUEUE_BULK)

    def _result(self, entry: Due, decision: Finish, share: float, row: Any) -> CloseResult:
        now = self.clock()
        progress = entry.item.progress
        result = CloseResult(entry.ref.conversation_id, decision.outcome, api_calls=progress.api_calls + share,
                             started_at=now, finished_at=now, participant_states=row_participant_states(row),
                             wrapups_pending=row_pending_wrapups(row) if decision.outcome.succeeded else 0,
                             confirmed_by=decision.confirmed_by or CONFIRMED_BY_ANALYTICS, batch_id=entry.ref.batch_id)
        if decision.confirm_seconds is not None:
            result.action, result.confirm_seconds = "patch", decision.confirm_seconds
        return result

    def _finished(self, stage: Stage, entry: Due, result: CloseResult) -> None:
        """Record the outcome first, then forget the item: a crash in between only repeats a (counted-once) record."""
        self.finish(result)
        pipe = self.redis.pipeline(transaction=False)
        self.items.forget(entry.ref, pipe=pipe)
        pipe.zrem(self.keys.checks(stage.value), entry.token)
        pipe.execute()

    def _hand(self, stage: Stage, to: Stage, entries: list[Due], share: float, batches: dict[str, BatchView],
              confirm_only: bool, live_read: LiveRead | None = None) -> None:
        """Move items to ``to`` and send each a close task (it runs that stage), grouped by batch."""
        self.queue.move([entry.ref for entry in entries], to, add_calls=share, confirm_only=confirm_only,
                        live_read=live_read)
        by_batch: dict[str, list[str]] = {}
        for entry in entries:
            by_batch.setdefault(str(entry.ref.batch_id), []).append(entry.ref.conversation_id)
        for batch_id, cids in by_batch.items():
            batch = batches[batch_id]
            self.batches.publish(batch_id, cids, batch.overrides, batch.queue)
        # Left last: after a crash before this, the next pump finds these items handed off and sends them again.
        self.redis.zrem(self.keys.checks(stage.value), *(entry.token for entry in entries))
