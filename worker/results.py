"""Outcomes and batch progress in Redis: they outlive Flower and the Celery result backend.

Keys (see ``config.redis_keys``): the latest outcome record per conversation, one hash per batch (state, total,
done and a counter per outcome), the batch's items (one record per item, written once), its members (every valid
ID enqueued in it, which also de-duplicates) and the recent-batches index. Every key expires after the retention
period (``RESULTS_TTL_SECONDS``, 7 days by default).
"""

from __future__ import annotations

import json
import time
from collections.abc import Callable, Iterator
from dataclasses import dataclass, field
from typing import Any

import redis

from genesys_closer.config.redis_keys import KEYS, RedisKeys
from genesys_closer.worker.closing.outcomes import CloseResult, Outcome
from genesys_closer.worker.genesys.redis_connection import register_lua, text

BATCH_STATES = ("enqueuing", "running", "finished", "cancelled", "stopped")


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
        """Store ``result``; count it in its batch exactly once. True when it was counted now."""
        payload = json.dumps(result.as_dict(), separators=(",", ":"))
        key = item_key or result.conversation_id
        if result.batch_id:
            keys = [self.keys.outcome(result.conversation_id), self.keys.batch_items(result.batch_id),
                    self.keys.batch(result.batch_id)]
        else:
            keys = [self.keys.outcome(result.conversation_id), "", ""]
        by_conversation = "0" if result.outcome is Outcome.INVALID_ID else "1"
        counted = self._record(keys=keys, args=[key, payload, result.outcome.value, self.retention,
                                                repr(self.clock()), by_conversation])
        return bool(counted)

    def outcome(self, conversation_id: str) -> CloseResult | None:
        raw = self.redis.get(self.keys.outcome(conversation_id))
        return None if raw is None else CloseResult.from_dict(json.loads(raw))

    # -- batches -----------------------------------------------------------------------------------------------
    def create_batch(self, batch_id: str, *, label: str = "", source: str = "", options: str = "{}",
                     queue: str = "bulk") -> None:
        now = self.clock()
        key = self.keys.batch(batch_id)
        pipe = self.redis.pipeline(transaction=True)
        pipe.hset(key, mapping={"state": "enqueuing", "done": 0, "created_at": repr(now), "label": label[:200],
                                "source": source[:200], "options": options, "queue": queue})
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

    def is_member(self, batch_id: str, conversation_id: str) -> bool:
        return bool(self.redis.sismember(self.keys.batch_members(batch_id), conversation_id))

    def mark_enqueued(self, batch_id: str, total: int) -> None:
        self._enqueued(keys=[self.keys.batch(batch_id)], args=[total, repr(self.clock())])

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
                          self.keys.batch_members(batch_id))
        self.redis.zrem(self.keys.batches, batch_id)

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
            yield CloseResult.from_dict(json.loads(raw))

    def recent_batches(self, limit: int = 20) -> list[BatchStatus]:
        ids = self.redis.zrevrange(self.keys.batches, 0, limit - 1)
        statuses = (self.batch_status(text(raw)) for raw in ids)
        return [status for status in statuses if status is not None]

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
