"""The per-item progress hash (``KEYS.progress``): the one class that reads and writes it.

What earlier attempts of a close did lives here, keyed by batch and conversation (never by task id), so a re-driven
task knows it: the item's stage on the batched path (``worker.checks.item_lifecycle.Stage``), whether a PATCH of
ours went out, its calls so far (a batched read counting as its share), its failed batched reads, and when the
direct path's retry window began. Every write refreshes the hash's time-to-live; an item's progress is forgotten
once its outcome is recorded.
"""

from __future__ import annotations

from collections.abc import Iterable
from typing import Any

import redis
from redis.client import Pipeline

from genesys_closer.config.redis_keys import KEYS, RedisKeys
from genesys_closer.shared.redis_connection import text
from genesys_closer.worker.checks.item_lifecycle import ItemRef, LiveRead, Progress, Stage

PROGRESS_TTL_SECONDS = 86_400
MAX_TASK_ID = 64  # Celery's ids are UUIDs (36); a sender's own id is cut to this
# field names, in one place
STAGE, PATCHED, PATCHED_AT, API_CALLS, CONFIRM_ONLY = "stage", "patched", "patched_at", "api_calls", "confirm_only"
READ_FAILURES, FIRST_ATTEMPT_AT = "read_failures", "first_attempt_at"
LIVE_READ, ANSWER_OPEN, TASK_ID = "live_read", "answer_open", "task"


def parse_progress(raw: dict[Any, Any]) -> Progress:
    fields = {text(k): text(v) for k, v in raw.items()}
    return Progress(stage=Stage.stored(fields.get(STAGE)), patched=fields.get(PATCHED) == "1",
                    patched_at=float(fields[PATCHED_AT]) if PATCHED_AT in fields else None,
                    api_calls=float(fields.get(API_CALLS) or 0), confirm_only=fields.get(CONFIRM_ONLY) == "1",
                    read_failures=int(fields.get(READ_FAILURES) or 0),
                    first_attempt_at=float(fields[FIRST_ATTEMPT_AT]) if FIRST_ATTEMPT_AT in fields else None,
                    live_read=LiveRead.stored(fields.get(LIVE_READ)), answer_open=fields.get(ANSWER_OPEN) == "1",
                    task_id=fields.get(TASK_ID) or None)


class ItemProgress:
    """Reads and writes items' progress hashes. Methods that take ``pipe`` queue their commands on it (the caller
    executes it, with its own commands in the same round trip); without one they run at once."""

    def __init__(self, client: redis.Redis, *, keys: RedisKeys = KEYS,
                 ttl_seconds: int = PROGRESS_TTL_SECONDS) -> None:
        self.redis = client
        self.keys = keys
        self.ttl_seconds = ttl_seconds

    def key(self, ref: ItemRef) -> str:
        return self.keys.progress(ref.conversation_id, ref.batch_id)

    # -- reading -----------------------------------------------------------------------------------------------
    def read(self, ref: ItemRef) -> Progress:
        return parse_progress(self.redis.hgetall(self.key(ref)))

    def read_many(self, refs: list[ItemRef]) -> list[Progress]:
        """Each item's progress, in one round trip (an item without a hash reads as ``Stage.NEW``)."""
        pipe = self.redis.pipeline(transaction=False)
        for ref in refs:
            pipe.hgetall(self.key(ref))
        return [parse_progress(raw) for raw in pipe.execute()] if refs else []

    # -- writing -----------------------------------------------------------------------------------------------
    def move(self, refs: Iterable[ItemRef], stage: Stage, *, add_calls: float = 0.0, patched: bool | None = None,
             patched_at: float | None = None, confirm_only: bool = False, live_read: LiveRead | None = None,
             answer_open: bool | None = None, task_id: str | None = None, pipe: Pipeline | None = None) -> None:
        """Move items to ``stage``, adding ``add_calls`` to each one's calls. ``patched``/``patched_at`` record the
        PATCH's answer and start the confirmation clock (``answer_open``: the answer did not show the end);
        ``confirm_only`` marks a direct path that only confirms, ``live_read`` why it reads the conversation;
        ``task_id`` the close task that moved it to a waiting stage (the pump reports the item's end to it)."""
        mapping: dict[str, str] = {STAGE: stage.value}
        if task_id is not None:
            mapping[TASK_ID] = task_id[:MAX_TASK_ID]
        if live_read is not None:
            mapping[LIVE_READ] = live_read.value
        if answer_open is not None:
            mapping[ANSWER_OPEN] = "1" if answer_open else "0"
        if patched is not None:
            mapping[PATCHED] = "1" if patched else "0"
        if patched_at is not None:
            mapping[PATCHED_AT] = repr(patched_at)
        if confirm_only:
            mapping[CONFIRM_ONLY] = "1"
        with self._pipeline(pipe) as queued:
            for ref in refs:
                key = self.key(ref)
                queued.hset(key, mapping=mapping)  # type: ignore[arg-type]
                if add_calls:
                    queued.hincrbyfloat(key, API_CALLS, add_calls)
                queued.expire(key, self.ttl_seconds)

    def mark_patched(self, ref: ItemRef, stage: Stage | None = None) -> None:
        """Right before our PATCH goes out (a retry or a re-driven task then knows it may have landed); on the
        batched path, also the stage that sends it."""
        mapping = {PATCHED: "1"} if stage is None else {STAGE: stage.value, PATCHED: "1"}
        with self._pipeline(None) as queued:
            queued.hset(self.key(ref), mapping=mapping)  # type: ignore[arg-type]
            queued.expire(self.key(ref), self.ttl_seconds)

    def add_calls(self, calls: dict[ItemRef, float], pipe: Pipeline | None = None) -> None:
        """Add each item's calls (a read's share) without moving it."""
        with self._pipeline(pipe) as queued:
            for ref, amount in calls.items():
                queued.hincrbyfloat(self.key(ref), API_CALLS, amount)
                queued.expire(self.key(ref), self.ttl_seconds)

    def count_read_failure(self, refs: list[ItemRef], share: float) -> list[int]:
        """One more failed batched read for each item (and its share of the calls): each one's failures so far."""
        pipe = self.redis.pipeline(transaction=False)
        for ref in refs:
            pipe.hincrby(self.key(ref), READ_FAILURES, 1)
            pipe.hincrbyfloat(self.key(ref), API_CALLS, share)
            pipe.expire(self.key(ref), self.ttl_seconds)
        return [int(count) for count in pipe.execute()[::3]] if refs else []

    def count_retryable_failure(self, ref: ItemRef, calls: float, now: float) -> tuple[float, float]:
        """A close attempt failed with a retryable error after ``calls`` calls: (its calls so far, when its first
        such failure happened, which starts the retry window)."""
        key = self.key(ref)
        pipe = self.redis.pipeline(transaction=False)
        pipe.hincrbyfloat(key, API_CALLS, calls)
        pipe.hsetnx(key, FIRST_ATTEMPT_AT, repr(now))
        pipe.hget(key, FIRST_ATTEMPT_AT)
        pipe.expire(key, self.ttl_seconds)
        total_calls, _, first_attempt_at, _ = pipe.execute()
        return float(total_calls), float(text(first_attempt_at))

    def forget(self, ref: ItemRef, pipe: Pipeline | None = None) -> None:
        """The item's outcome is recorded: its progress goes."""
        with self._pipeline(pipe) as queued:
            queued.delete(self.key(ref))

    def _pipeline(self, pipe: Pipeline | None) -> _Queued:
        return _Queued(self.redis, pipe)


class _Queued:
    """The caller's pipeline as is, or a fresh one executed on exit."""

    def __init__(self, client: redis.Redis, pipe: Pipeline | None) -> None:
        self.owned = pipe is None
        self.pipe: Pipeline = client.pipeline(transaction=False) if pipe is None else pipe

    def __enter__(self) -> Pipeline:
        return self.pipe

    def __exit__(self, exc_type: object, *_: object) -> None:
        if self.owned and exc_type is None:
            self.pipe.execute()
