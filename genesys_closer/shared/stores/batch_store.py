"""Batches: one hash per batch (state, total, done, a counter per outcome, options), its items (one record per
item, written once), its members (every valid ID enqueued in it, which also de-duplicates) and the recent-batches
index. A batch's state changes only through Lua scripts that follow ``batch_state.next_state`` atomically."""

from __future__ import annotations

import json
import re
import time
from collections.abc import Callable, Iterator
from dataclasses import dataclass, field
from typing import Any

import redis

from genesys_closer.config.orgs import DEFAULT_ORG
from genesys_closer.config.redis_keys import KEYS, RedisKeys
from genesys_closer.shared.names import QUEUE_BULK
from genesys_closer.shared.outcomes import CloseResult, Outcome
from genesys_closer.shared.redis_connection import text
from genesys_closer.shared.stores.batch_scripts import register_batch_script
from genesys_closer.shared.stores.batch_state import BatchEvent, BatchState

_BATCH_ID = re.compile(r"^[0-9a-f]{32}$")
MAX_LABEL = 200  # a label or source is cut to this length
MAX_REASON = 500


def is_batch_id(value: object) -> bool:
    """Batch ids are what the producer makes (32 lower-case hex digits); anything else is not a batch id."""
    return isinstance(value, str) and _BATCH_ID.fullmatch(value) is not None


def batch_state(raw: object) -> BatchState | None:
    """A stored state, or None for a missing or unknown one."""
    try:
        return None if raw is None else BatchState(text(raw))
    except ValueError:
        return None


@dataclass
class BatchStatus:
    batch_id: str
    state: BatchState
    total: int | None
    done: int
    counts: dict[str, int] = field(default_factory=dict)
    created_at: float = 0.0
    finished_at: float | None = None
    label: str = ""
    source: str = ""
    duplicates: int = 0
    reason: str = ""
    org: str = DEFAULT_ORG

    @property
    def finished(self) -> bool:
        """Every item has an outcome (whatever the state: a cancelled batch finishes too)."""
        return self.finished_at is not None

    @property
    def succeeded(self) -> int:
        return sum(n for name, n in self.counts.items() if Outcome(name).succeeded)

    @property
    def unsuccessful(self) -> int:
        return sum(n for name, n in self.counts.items() if not Outcome(name).succeeded)

    def as_dict(self) -> dict[str, Any]:
        return {
            "batch_id": self.batch_id, "state": self.state.value, "total": self.total, "done": self.done,
            "counts": dict(self.counts), "created_at": self.created_at, "finished_at": self.finished_at,
            "label": self.label, "source": self.source, "duplicates": self.duplicates, "reason": self.reason,
            "org": self.org,
        }


@dataclass(frozen=True)
class ItemView:
    member: bool
    origin: str | None
    state: BatchState | None
    reason: str


@dataclass(frozen=True)
class StateChange:
    """What a cancel or a stop did: ``changed`` when it moved the batch now, and the state after the call."""

    changed: bool
    state: BatchState | None


class BatchStore:
    def __init__(self, client: redis.Redis, retention_seconds: int, *, keys: RedisKeys = KEYS,
                 clock: Callable[[], float] = time.time) -> None:
        self.redis = client
        self.retention = retention_seconds
        self.keys = keys
        self.clock = clock
        self._create = register_batch_script(client, "batch_create.lua")
        self._enqueued = register_batch_script(client, "batch_enqueued.lua")
        self._end = register_batch_script(client, "batch_end.lua")

    # -- building a batch --------------------------------------------------------------------------------------
    def create(self, batch_id: str, *, label: str = "", source: str = "", options: str = "{}",
               queue: str = QUEUE_BULK, origin: str = "list") -> bool:
        """Create the batch (state ``enqueuing``); False, with nothing written, when its id is in use."""
        keys = [self.keys.batch(batch_id), self.keys.batch_items(batch_id), self.keys.batch_members(batch_id),
                self.keys.batches]
        created = self._create(keys=keys, args=[batch_id, repr(self.clock()), self.retention,
                                                BatchState.ENQUEUING.value, label[:MAX_LABEL], source[:MAX_LABEL],
                                                options, queue, origin])
        return bool(created)

    def add_members(self, batch_id: str, conversation_ids: list[str]) -> list[str]:
        """Add IDs to the batch's members; return those that were new (duplicates are dropped and counted)."""
        key = self.keys.batch_members(batch_id)
        pipe = self.redis.pipeline(transaction=False)
        for conversation_id in conversation_ids:
            pipe.sadd(key, conversation_id)
        pipe.expire(key, self.retention)
        added = pipe.execute()[:-1]
        fresh = [cid for cid, new in zip(conversation_ids, added, strict=True) if new]
        duplicates = len(conversation_ids) - len(fresh)
        if duplicates:
            self.redis.hincrby(self.keys.batch(batch_id), "duplicates", duplicates)
        return fresh

    def track_enqueuing(self, batch_id: str) -> None:
        """List the batch among those being enqueued (until ``mark_enqueued`` or ``discard``)."""
        self.redis.sadd(self.keys.enqueuing, batch_id)

    def enqueuing(self) -> list[str]:
        """Batches being enqueued (see ``shared.enqueue_lease``)."""
        return sorted(text(raw) for raw in self.redis.smembers(self.keys.enqueuing))

    def mark_staged(self, batch_id: str, total: int) -> None:
        """Every item of the batch is stored (members and invalid-ID records): its total is known, its items may
        not all be published yet (the state stays ``enqueuing``, so it cannot finish early)."""
        self.redis.hset(self.keys.batch(batch_id), mapping={"total": total, "staged_at": repr(self.clock())})

    def mark_enqueued(self, batch_id: str, total: int) -> bool:
        """Every item is published (the ``enqueued`` event): an enqueuing batch runs (a cancelled or stopped one keeps
        its state), and its total is recorded unless it was staged with one. False when the event did not apply
        (the batch runs already, is finished, or is gone)."""
        applied = bool(self._enqueued(keys=[self.keys.batch(batch_id)], args=[total, repr(self.clock())]))
        self.redis.srem(self.keys.enqueuing, batch_id)
        return applied

    def discard(self, batch_id: str) -> None:
        self.redis.delete(self.keys.batch(batch_id), self.keys.batch_items(batch_id),
                          self.keys.batch_members(batch_id), self.keys.batch_feed(batch_id),
                          self.keys.batch_in_flight(batch_id))
        self.redis.zrem(self.keys.batches, batch_id)
        self.redis.srem(self.keys.enqueuing, batch_id)
        self.redis.srem(self.keys.feeding, batch_id)

    # -- its state ---------------------------------------------------------------------------------------------
    def cancel(self, batch_id: str, reason: str = "cancelled by operator") -> StateChange:
        """Items not yet run end as ``cancelled``. A finished, cancelled or stopped batch is left as it is."""
        return self._apply(batch_id, BatchEvent.CANCEL, reason)

    def stop(self, batch_id: str, reason: str) -> StateChange:
        """Items not yet run are not attempted (the breaker is open). A finished or cancelled batch is left as it
        is, and a stopped one keeps its first reason."""
        return self._apply(batch_id, BatchEvent.STOP, reason)

    def _apply(self, batch_id: str, event: BatchEvent, reason: str) -> StateChange:
        changed, after = self._end(keys=[self.keys.batch(batch_id)], args=[event.value, reason[:MAX_REASON]])
        return StateChange(changed=bool(changed), state=batch_state(after))

    def state(self, batch_id: str) -> tuple[BatchState | None, str]:
        state, reason = self.redis.hmget(self.keys.batch(batch_id), ["state", "reason"])
        return batch_state(state), (text(reason) if reason else "")

    def item_view(self, batch_id: str, conversation_id: str) -> ItemView:
        """In one round trip: whether the conversation is an item of the batch, and the batch's origin and state."""
        pipe = self.redis.pipeline(transaction=False)
        pipe.sismember(self.keys.batch_members(batch_id), conversation_id)
        pipe.hmget(self.keys.batch(batch_id), ["origin", "state", "reason"])
        member, (origin, state, reason) = pipe.execute()
        return ItemView(member=bool(member), origin=None if origin is None else text(origin),
                        state=batch_state(state), reason=text(reason) if reason else "")

    # -- reading -----------------------------------------------------------------------------------------------
    def status(self, batch_id: str) -> BatchStatus | None:
        """The batch's status; None when there is no batch of that id (or only a remnant without a state)."""
        raw = {text(k): text(v) for k, v in self.redis.hgetall(self.keys.batch(batch_id)).items()}
        state = batch_state(raw.get("state"))
        if state is None:
            return None
        return BatchStatus(
            batch_id=batch_id,
            state=state,
            total=int(raw["total"]) if "total" in raw else None,
            done=int(raw.get("done", 0)),
            counts={k.removeprefix("outcome:"): int(v) for k, v in raw.items() if k.startswith("outcome:")},
            created_at=float(raw.get("created_at", 0)),
            finished_at=float(raw["finished_at"]) if "finished_at" in raw else None,
            label=raw.get("label", ""),
            source=raw.get("source", ""),
            duplicates=int(raw.get("duplicates", 0)),
            reason=raw.get("reason", ""),
            org=self.keys.org,
        )

    def fields(self, batch_id: str, *names: str) -> list[str | None]:
        return [None if v is None else text(v) for v in self.redis.hmget(self.keys.batch(batch_id), list(names))]

    def items(self, batch_id: str, count: int = 500) -> Iterator[CloseResult]:
        """Every recorded item of a batch, streamed with HSCAN."""
        for _, raw in self.redis.hscan_iter(self.keys.batch_items(batch_id), count=count):
            yield CloseResult.from_dict({**json.loads(raw), "batch_id": batch_id, "org": self.keys.org})

    def items_page(self, batch_id: str, cursor: int, count: int, match: str | None = None
                   ) -> tuple[int, list[CloseResult]]:
        """One HSCAN step over a batch's recorded items (``match``: a glob on conversation ids): the next cursor
        (0: the end) and the items of that step, about ``count`` of them. A page costs the same at item 100,000 as
        at item 1."""
        next_cursor, raw = self.redis.hscan(self.keys.batch_items(batch_id), cursor, match=match, count=count)
        values = raw.values() if isinstance(raw, dict) else raw[1::2]
        return int(next_cursor), [CloseResult.from_dict({**json.loads(v), "batch_id": batch_id}) for v in values]

    def item(self, batch_id: str, conversation_id: str) -> CloseResult | None:
        raw = self.redis.hget(self.keys.batch_items(batch_id), conversation_id)
        return None if raw is None else CloseResult.from_dict({**json.loads(raw), "batch_id": batch_id})

    def recent(self, limit: int = 20) -> list[BatchStatus]:
        ids = self.redis.zrevrange(self.keys.batches, 0, limit - 1)
        statuses = (self.status(text(raw)) for raw in ids)
        return [status for status in statuses if status is not None]

    # -- recovery ----------------------------------------------------------------------------------------------
    def missing_items(self, batch_id: str, chunk: int = 500) -> Iterator[str]:
        """Valid IDs of the batch that have no recorded outcome yet."""
        items = self.keys.batch_items(batch_id)
        members: list[str] = []
        for member in self.redis.sscan_iter(self.keys.batch_members(batch_id), count=chunk):
            members.append(text(member))
            if len(members) >= chunk:
                yield from self._without_outcome(items, members)
                members = []
        if members:
            yield from self._without_outcome(items, members)

    def _without_outcome(self, items_key: str, members: list[str]) -> Iterator[str]:
        pipe = self.redis.pipeline(transaction=False)
        for member in members:
            pipe.hexists(items_key, member)
        for member, recorded in zip(members, pipe.execute(), strict=True):
            if not recorded:
                yield member

    def stalled(self, stall_seconds: float) -> list[str]:
        """Unfinished, fully enqueued batches without progress (and not re-driven) for ``stall_seconds``."""
        now = self.clock()
        stalled = []
        for raw in self.redis.zrangebyscore(self.keys.batches, now - self.retention, now - stall_seconds):
            batch_id = text(raw)
            fields = self.fields(batch_id, "state", "finished_at", "updated_at", "redriven_at")
            state, finished_at, updated_at, redriven_at = fields
            if batch_state(state) in (None, BatchState.ENQUEUING, BatchState.FINISHED) or finished_at is not None:
                continue
            last = max(float(updated_at or 0), float(redriven_at or 0))
            if now - last >= stall_seconds:
                stalled.append(batch_id)
        return stalled

    def unfinished(self) -> list[str]:
        """Fully enqueued batches of the retention period that are running and not finished."""
        now = self.clock()
        found = []
        for raw in self.redis.zrangebyscore(self.keys.batches, now - self.retention, "+inf"):
            batch_id = text(raw)
            state, finished_at = self.fields(batch_id, "state", "finished_at")
            if batch_state(state) is BatchState.RUNNING and finished_at is None:
                found.append(batch_id)
        return found

    def mark_redriven(self, batch_id: str, count: int) -> None:
        pipe = self.redis.pipeline(transaction=False)
        pipe.hset(self.keys.batch(batch_id), "redriven_at", repr(self.clock()))
        pipe.hincrby(self.keys.batch(batch_id), "redriven", count)
        pipe.execute()
