"""Outcomes and batch progress in Redis: they outlive Flower and the Celery result backend.

Keys (see ``config.redis_keys``): the latest outcome record per conversation, one hash per batch (state, total,
done and a counter per outcome), the batch's items (one record per item, written once), its members (every valid
ID enqueued in it, which also de-duplicates) and the recent-batches index. Every key expires after the retention
period (``RESULTS_TTL_SECONDS``, 7 days by default).
"""

from __future__ import annotations

import json
import re
import time
from collections.abc import Callable, Iterator
from dataclasses import dataclass, field
from typing import Any

import redis

from genesys_closer.config.redis_keys import KEYS, RedisKeys
from genesys_closer.worker.closing.outcomes import CloseResult, Outcome
from genesys_closer.worker.genesys.redis_connection import register_lua, text

BATCH_STATES = ("enqueuing", "running", "finished", "cancelled", "stopped")
_BATCH_ID = re.compile(r"^[0-9a-f]{32}$")


def is_batch_id(value: object) -> bool:
    """Batch ids are what the producer makes (32 lower-case hex digits); anything else is not a batch id."""
    return isinstance(value, str) and _BATCH_ID.fullmatch(value) is not None


@dataclass
class BatchStatus:
    batch_id: str
    state: str
    total: int | None
    done: int
    counts: dict[str, int] = field(default_factory=dict)
    created_at: float = 0.0
    finished_at: float | None = None
    label: str = ""
    source: str = ""
    duplicates: int = 0
    reason: str = ""

    @property
    def finished(self) -> bool:
        return self.finished_at is not None

    @property
    def succeeded(self) -> int:
        return sum(n for name, n in self.counts.items() if Outcome(name).succeeded)

    @property
    def unsuccessful(self) -> int:
        return sum(n for name, n in self.counts.items() if not Outcome(name).succeeded)

    def as_dict(self) -> dict[str, Any]:
        return {
            "batch_id": self.batch_id, "state": self.state, "total": self.total, "done": self.done,
            "counts": dict(self.counts), "created_at": self.created_at, "finished_at": self.finished_at,
            "label": self.label, "source": self.source, "duplicates": self.duplicates, "reason": self.reason,
        }


@dataclass(frozen=True)
class ItemView:
    member: bool
    origin: str | None
    state: str | None
    reason: str


class ResultStore:
    def __init__(self, client: redis.Redis, retention_seconds: int = 7 * 24 * 3600, *,
                 keys: RedisKeys = KEYS, clock: Callable[[], float] = time.time) -> None:
        self.redis = client
        self.retention = retention_seconds
        self.keys = keys
        self.clock = clock
        self._record = register_lua(client, "batch_finish.lua", "record_outcome.lua")
        self._enqueued = register_lua(client, "batch_finish.lua", "batch_enqueued.lua")

    # -- outcomes ----------------------------------------------------------------------------------------------
    def record(self, result: CloseResult, item_key: str | None = None) -> bool:
        """Store ``result``; count it in its batch exactly once. True when it was counted now.

        A batch item's record is kept once, in its batch; the conversation's latest-outcome key then holds only a
        reference to it (``{"batch_id": ...}``), which keeps a batched close under 1 kB of Redis memory."""
        keys, args = self._record_call(result, item_key)
        return bool(self._record(keys=keys, args=args))

    def record_many(self, results: list[CloseResult]) -> int:
        """``record`` for several outcomes in one round trip; returns how many were counted now."""
        pipe = self.redis.pipeline(transaction=False)
        for result in results:
            keys, args = self._record_call(result, None)
            self._record(keys=keys, args=args, client=pipe)
        return sum(1 for counted in pipe.execute() if counted)

    def _record_call(self, result: CloseResult, item_key: str | None) -> tuple[list[str], list[Any]]:
        payload = json.dumps(result.stored(in_batch=bool(result.batch_id)), separators=(",", ":"))
        key = item_key or result.conversation_id
        if result.batch_id:
            keys = [self.keys.outcome(result.conversation_id), self.keys.batch_items(result.batch_id),
                    self.keys.batch(result.batch_id)]
            latest = result.batch_id  # a reference: the record is in that batch, under the conversation id
        else:
            keys = [self.keys.outcome(result.conversation_id), "", ""]
            latest = payload
        by_conversation = "0" if result.outcome is Outcome.INVALID_ID else "1"
        return keys, [key, payload, result.outcome.value, self.retention, repr(self.clock()), by_conversation, latest]

    def record_rejected(self, result: CloseResult, task_id: str, keep: int = 1000) -> None:
        """A message refused before it ran: kept in a capped list (and counted in its batch when it is an item)."""
        entry = json.dumps({"task_id": task_id, **result.as_dict()}, separators=(",", ":"))
        pipe = self.redis.pipeline(transaction=False)
        pipe.lpush(self.keys.rejected, entry)
        pipe.ltrim(self.keys.rejected, 0, keep - 1)
        pipe.expire(self.keys.rejected, self.retention)
        pipe.execute()
        if result.batch_id:
            self.record(result)

    def rejected(self, limit: int = 100) -> list[dict[str, Any]]:
        return [dict(json.loads(raw)) for raw in self.redis.lrange(self.keys.rejected, 0, limit - 1)]

    def outcome(self, conversation_id: str) -> CloseResult | None:
        """The latest outcome recorded for a conversation (following a batch item's reference)."""
        raw = self.redis.get(self.keys.outcome(conversation_id))
        if raw is None:
            return None
        raw = text(raw)
        if raw.startswith("{"):
            return CloseResult.from_dict(json.loads(raw))
        batch_id = raw
        item = self.redis.hget(self.keys.batch_items(batch_id), conversation_id)
        return None if item is None else CloseResult.from_dict({**json.loads(item), "batch_id": batch_id})

    # -- batches -----------------------------------------------------------------------------------------------
    def create_batch(self, batch_id: str, *, label: str = "", source: str = "", options: str = "{}",
                     queue: str = "bulk", origin: str = "list") -> None:
        now = self.clock()
        key = self.keys.batch(batch_id)
        pipe = self.redis.pipeline(transaction=True)
        pipe.hset(key, mapping={"state": "enqueuing", "done": 0, "created_at": repr(now), "label": label[:200],
                                "source": source[:200], "options": options, "queue": queue,
                                "origin": origin})
        pipe.expire(key, self.retention)
        pipe.zadd(self.keys.batches, {batch_id: now})
        pipe.zremrangebyscore(self.keys.batches, 0, now - self.retention)
        pipe.execute()

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

    def item_view(self, batch_id: str, conversation_id: str) -> ItemView:
        """In one round trip: whether the conversation is an item of the batch, and the batch's origin and state."""
        pipe = self.redis.pipeline(transaction=False)
        pipe.sismember(self.keys.batch_members(batch_id), conversation_id)
        pipe.hmget(self.keys.batch(batch_id), ["origin", "state", "reason"])
        member, (origin, state, reason) = pipe.execute()
        return ItemView(member=bool(member), origin=None if origin is None else text(origin),
                        state=None if state is None else text(state), reason=text(reason) if reason else "")

    def track_enqueuing(self, batch_id: str) -> None:
        """List the batch among those being enqueued (until ``mark_enqueued`` or ``discard_batch``)."""
        self.redis.sadd(self.keys.enqueuing, batch_id)

    def enqueuing_batches(self) -> list[str]:
        return sorted(text(raw) for raw in self.redis.smembers(self.keys.enqueuing))

    def mark_staged(self, batch_id: str, total: int) -> None:
        """Every item of the batch is stored (members and invalid-ID records): its total is known, its items may
        not all be published yet (the state stays ``enqueuing``, so it cannot finish early)."""
        self.redis.hset(self.keys.batch(batch_id), mapping={"total": total, "staged_at": repr(self.clock())})

    def mark_enqueued(self, batch_id: str, total: int) -> None:
        self._enqueued(keys=[self.keys.batch(batch_id)], args=[total, repr(self.clock())])
        self.redis.srem(self.keys.enqueuing, batch_id)

    def set_state(self, batch_id: str, state: str, reason: str = "") -> None:
        if state not in BATCH_STATES:
            raise ValueError(f"unknown batch state {state!r}; one of {', '.join(BATCH_STATES)}")
        mapping: dict[str | bytes, str | bytes] = {"state": state}
        if reason:
            mapping["reason"] = reason[:500]
        self.redis.hset(self.keys.batch(batch_id), mapping=mapping)  # type: ignore[arg-type]

    def batch_state(self, batch_id: str) -> tuple[str | None, str]:
        state, reason = self.redis.hmget(self.keys.batch(batch_id), ["state", "reason"])
        return (text(state) if state else None), (text(reason) if reason else "")

    def discard_batch(self, batch_id: str) -> None:
        self.redis.delete(self.keys.batch(batch_id), self.keys.batch_items(batch_id),
                          self.keys.batch_members(batch_id), self.keys.batch_feed(batch_id),
                          self.keys.batch_in_flight(batch_id))
        self.redis.zrem(self.keys.batches, batch_id)
        self.redis.srem(self.keys.enqueuing, batch_id)
        self.redis.srem(self.keys.feeding, batch_id)

    def batch_status(self, batch_id: str) -> BatchStatus | None:
        raw = {text(k): text(v) for k, v in self.redis.hgetall(self.keys.batch(batch_id)).items()}
        if not raw:
            return None
        return BatchStatus(
            batch_id=batch_id,
            state=raw.get("state", "unknown"),
            total=int(raw["total"]) if "total" in raw else None,
            done=int(raw.get("done", 0)),
            counts={k.removeprefix("outcome:"): int(v) for k, v in raw.items() if k.startswith("outcome:")},
            created_at=float(raw.get("created_at", 0)),
            finished_at=float(raw["finished_at"]) if "finished_at" in raw else None,
            label=raw.get("label", ""),
            source=raw.get("source", ""),
            duplicates=int(raw.get("duplicates", 0)),
            reason=raw.get("reason", ""),
        )

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

    def stalled_batches(self, stall_seconds: float) -> list[str]:
        """Unfinished, fully enqueued batches without progress (and not re-driven) for ``stall_seconds``."""
        now = self.clock()
        stalled = []
        for raw in self.redis.zrangebyscore(self.keys.batches, now - self.retention, now - stall_seconds):
            batch_id = text(raw)
            fields = self.redis.hmget(self.keys.batch(batch_id), ["state", "finished_at", "updated_at", "redriven_at"])
            state, finished_at, updated_at, redriven_at = (None if v is None else text(v) for v in fields)
            if state in (None, "enqueuing", "finished") or finished_at is not None:
                continue
            last = max(float(updated_at or 0), float(redriven_at or 0))
            if now - last >= stall_seconds:
                stalled.append(batch_id)
        return stalled

    def mark_redriven(self, batch_id: str, count: int) -> None:
        pipe = self.redis.pipeline(transaction=False)
        pipe.hset(self.keys.batch(batch_id), "redriven_at", repr(self.clock()))
        pipe.hincrby(self.keys.batch(batch_id), "redriven", count)
        pipe.execute()

    def batch_fields(self, batch_id: str, *names: str) -> list[str | None]:
        return [None if v is None else text(v) for v in self.redis.hmget(self.keys.batch(batch_id), list(names))]

    def iter_items(self, batch_id: str, count: int = 500) -> Iterator[CloseResult]:
        """Every recorded item of a batch, streamed with HSCAN."""
        for _, raw in self.redis.hscan_iter(self.keys.batch_items(batch_id), count=count):
            yield CloseResult.from_dict({**json.loads(raw), "batch_id": batch_id})

    def recent_batches(self, limit: int = 20) -> list[BatchStatus]:
        ids = self.redis.zrevrange(self.keys.batches, 0, limit - 1)
        statuses = (self.batch_status(text(raw)) for raw in ids)
        return [status for status in statuses if status is not None]

    def unfinished_batches(self) -> list[str]:
        """Fully enqueued batches of the retention period that are running and not finished."""
        now = self.clock()
        found = []
        for raw in self.redis.zrangebyscore(self.keys.batches, now - self.retention, "+inf"):
            batch_id = text(raw)
            state, finished_at = self.redis.hmget(self.keys.batch(batch_id), ["state", "finished_at"])
            if state is not None and text(state) == "running" and finished_at is None:
                found.append(batch_id)
        return found

    # -- standalone closes -------------------------------------------------------------------------------------
    def track_pending(self, task_id: str, conversation_id: str, options: dict[str, Any], queue: str, *,
                      only_if_absent: bool = False) -> None:
        """Remember a standalone close until its outcome is recorded (so a lost message can be re-sent). Workers
        pass ``only_if_absent`` (a close a producer already tracked keeps its entry)."""
        entry = json.dumps({"conversation_id": conversation_id, "options": options, "queue": queue,
                            "at": self.clock()}, separators=(",", ":"))
        if only_if_absent:
            self.redis.hsetnx(self.keys.pending, task_id, entry)
        else:
            self.redis.hset(self.keys.pending, task_id, entry)

    def forget_pending(self, task_id: str) -> None:
        self.redis.hdel(self.keys.pending, task_id)

    def pending(self) -> Iterator[tuple[str, dict[str, Any]]]:
        """(task id, entry) of every standalone close not yet recorded."""
        for task_id, raw in self.redis.hscan_iter(self.keys.pending, count=500):
            try:
                entry = json.loads(raw)
            except ValueError:
                continue
            if isinstance(entry, dict):
                yield text(task_id), entry

    # -- sweeps ------------------------------------------------------------------------------------------------
    def save_sweep(self, sweep_id: str, summary: dict[str, Any], candidates: list[str]) -> None:
        """A sweep's summary and its candidates (JSON lines), kept for the retention period."""
        key = self.keys.sweep_candidates(sweep_id)
        pipe = self.redis.pipeline(transaction=False)
        for chunk_start in range(0, len(candidates), 500):
            pipe.rpush(key, *candidates[chunk_start:chunk_start + 500])
        pipe.expire(key, self.retention)
        pipe.set(self.keys.sweep(sweep_id), json.dumps(summary), ex=self.retention)
        pipe.execute()

    def sweep_summary(self, sweep_id: str) -> dict[str, Any] | None:
        raw = self.redis.get(self.keys.sweep(sweep_id))
        return None if raw is None else dict(json.loads(raw))

    def iter_sweep_candidates(self, sweep_id: str, chunk: int = 500) -> Iterator[dict[str, Any]]:
        start = 0
        while True:
            rows = self.redis.lrange(self.keys.sweep_candidates(sweep_id), start, start + chunk - 1)
            if not rows:
                return
            start += len(rows)
            for raw in rows:
                yield dict(json.loads(raw))
