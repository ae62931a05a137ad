"""Outcomes and batch progress in Redis: they outlive Flower and the Celery result backend.

Keys (prefix ``genesys-closer:``): ``outcome:{conversationId}`` (latest outcome record), ``batch:{id}`` (one hash:
state, total, done and a counter per outcome), ``batch:{id}:items`` (one record per item, written once),
``batch:{id}:seen`` (de-duplication while enqueuing) and ``batches`` (recent batches by creation time).
Every key expires after the retention period (``RESULTS_TTL_SECONDS``, 7 days by default).
"""

from __future__ import annotations

import json
import time
from collections.abc import Iterator
from dataclasses import dataclass, field
from importlib import resources
from typing import Any

import redis

from worker.outcomes import CloseResult, Outcome
from worker.redis_client import text

PREFIX = "genesys-closer"
BATCH_STATES = ("enqueuing", "running", "finished", "cancelled", "stopped")


def _script(name: str) -> str:
    return resources.files("worker").joinpath(f"lua/{name}").read_text(encoding="utf-8")


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

    def as_dict(self) -> dict[str, Any]:
        return {
            "batch_id": self.batch_id, "state": self.state, "total": self.total, "done": self.done,
            "counts": dict(self.counts), "created_at": self.created_at, "finished_at": self.finished_at,
            "label": self.label, "source": self.source, "duplicates": self.duplicates, "reason": self.reason,
        }


class ResultStore:
    def __init__(self, client: redis.Redis, retention_seconds: int = 7 * 24 * 3600, prefix: str = PREFIX) -> None:
        self.redis = client
        self.retention = retention_seconds
        self.prefix = prefix
        self._record = client.register_script(_script("record_outcome.lua"))
        self._enqueued = client.register_script(_script("batch_enqueued.lua"))

    # -- keys --------------------------------------------------------------------------------------------------
    def outcome_key(self, conversation_id: str) -> str:
        return f"{self.prefix}:outcome:{conversation_id}"

    def batch_key(self, batch_id: str) -> str:
        return f"{self.prefix}:batch:{batch_id}"

    # -- outcomes ----------------------------------------------------------------------------------------------
    def record(self, result: CloseResult, item_key: str | None = None) -> bool:
        """Store ``result``; count it in its batch exactly once. True when it was counted now."""
        payload = json.dumps(result.as_dict(), separators=(",", ":"))
        key = item_key or result.conversation_id
        if result.batch_id:
            keys = [self.outcome_key(result.conversation_id), f"{self.batch_key(result.batch_id)}:items",
                    self.batch_key(result.batch_id)]
        else:
            keys = [self.outcome_key(result.conversation_id), "", ""]
        by_conversation = "0" if result.outcome is Outcome.INVALID_ID else "1"
        counted = self._record(keys=keys, args=[key, payload, result.outcome.value, self.retention,
                                                repr(time.time()), by_conversation])
        return bool(counted)

    def outcome(self, conversation_id: str) -> CloseResult | None:
        raw = self.redis.get(self.outcome_key(conversation_id))
        return None if raw is None else CloseResult.from_dict(json.loads(raw))

    # -- batches -----------------------------------------------------------------------------------------------
    def create_batch(self, batch_id: str, *, label: str = "", source: str = "", options: str = "{}",
                     queue: str = "bulk") -> None:
        now = time.time()
        key = self.batch_key(batch_id)
        pipe = self.redis.pipeline(transaction=True)
        pipe.hset(key, mapping={"state": "enqueuing", "done": 0, "created_at": repr(now), "label": label[:200],
                                "source": source[:200], "options": options, "queue": queue})
        pipe.expire(key, self.retention)
        pipe.zadd(f"{self.prefix}:batches", {batch_id: now})
        pipe.zremrangebyscore(f"{self.prefix}:batches", 0, now - self.retention)
        pipe.execute()

    def add_unseen(self, batch_id: str, conversation_ids: list[str]) -> list[str]:
        """The IDs not yet seen in this batch (duplicates are dropped and counted)."""
        key = f"{self.batch_key(batch_id)}:seen"
        pipe = self.redis.pipeline(transaction=False)
        for conversation_id in conversation_ids:
            pipe.sadd(key, conversation_id)
        pipe.expire(key, self.retention)
        added = pipe.execute()[:-1]
        fresh = [cid for cid, new in zip(conversation_ids, added, strict=True) if new]
        duplicates = len(conversation_ids) - len(fresh)
        if duplicates:
            self.redis.hincrby(self.batch_key(batch_id), "duplicates", duplicates)
        return fresh

    def mark_enqueued(self, batch_id: str, total: int) -> None:
        self._enqueued(keys=[self.batch_key(batch_id)], args=[total, repr(time.time())])

    def set_state(self, batch_id: str, state: str, reason: str = "") -> None:
        assert state in BATCH_STATES
        self.redis.hset(self.batch_key(batch_id), "state", state)
        if reason:
            self.redis.hset(self.batch_key(batch_id), "reason", reason[:500])

    def batch_state(self, batch_id: str) -> tuple[str | None, str]:
        state, reason = self.redis.hmget(self.batch_key(batch_id), ["state", "reason"])
        return (text(state) if state else None), (text(reason) if reason else "")

    def discard_batch(self, batch_id: str) -> None:
        key = self.batch_key(batch_id)
        self.redis.delete(key, f"{key}:items", f"{key}:seen")
        self.redis.zrem(f"{self.prefix}:batches", batch_id)

    def batch_status(self, batch_id: str) -> BatchStatus | None:
        raw = {text(k): text(v) for k, v in self.redis.hgetall(self.batch_key(batch_id)).items()}
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
        items = f"{self.batch_key(batch_id)}:items"
        members: list[str] = []
        for member in self.redis.sscan_iter(f"{self.batch_key(batch_id)}:seen", count=chunk):
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

    def stalled_batches(self, stall_seconds: float, now: float | None = None) -> list[str]:
        """Unfinished, fully enqueued batches without progress (and not re-driven) for ``stall_seconds``."""
        now = now or time.time()
        stalled = []
        for raw in self.redis.zrangebyscore(f"{self.prefix}:batches", now - self.retention, now - stall_seconds):
            batch_id = text(raw)
            fields = self.redis.hmget(self.batch_key(batch_id), ["state", "finished_at", "updated_at", "redriven_at"])
            state, finished_at, updated_at, redriven_at = (None if v is None else text(v) for v in fields)
            if state in (None, "enqueuing", "finished") or finished_at is not None:
                continue
            last = max(float(updated_at or 0), float(redriven_at or 0))
            if now - last >= stall_seconds:
                stalled.append(batch_id)
        return stalled

    def mark_redriven(self, batch_id: str, count: int) -> None:
        pipe = self.redis.pipeline(transaction=False)
        pipe.hset(self.batch_key(batch_id), "redriven_at", repr(time.time()))
        pipe.hincrby(self.batch_key(batch_id), "redriven", count)
        pipe.execute()

    def batch_fields(self, batch_id: str, *names: str) -> list[str | None]:
        return [None if v is None else text(v) for v in self.redis.hmget(self.batch_key(batch_id), list(names))]

    def iter_items(self, batch_id: str, count: int = 500) -> Iterator[CloseResult]:
        """Every recorded item of a batch, streamed with HSCAN."""
        for _, raw in self.redis.hscan_iter(f"{self.batch_key(batch_id)}:items", count=count):
            yield CloseResult.from_dict(json.loads(raw))

    def recent_batches(self, limit: int = 20) -> list[BatchStatus]:
        ids = self.redis.zrevrange(f"{self.prefix}:batches", 0, limit - 1)
        statuses = (self.batch_status(text(raw)) for raw in ids)
        return [status for status in statuses if status is not None]
