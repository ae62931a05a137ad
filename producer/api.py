"""The producer API: enqueue closes and follow batches. Needs only ``REDIS_URL``, never Genesys credentials.

    client = CloseClient()                      # settings from the environment
    client.close("3b47a74f-...")                 # -> task id (interactive queue)
    client.close("3b47a74f-...", wait=True)      # -> CloseResult
    batch = client.close_many(open("ids.txt"))   # validates every ID first, streams, publishes on one connection
    batch.wait(progress=print)                   # -> BatchStatus
"""

from __future__ import annotations

import functools
import json
import tempfile
import time
import uuid
from collections.abc import Callable, Iterable, Iterator
from typing import Any

from celery import Celery

from config.settings import Settings, get_settings
from worker.app import QUEUE_BULK, QUEUE_INTERACTIVE, TASK_NAME, create_app
from worker.closer import CloseOptions
from worker.errors import CloserError, InvalidConversationId
from worker.ids import parse_conversation_id
from worker.outcomes import CloseResult, Outcome
from worker.redis_client import connect
from worker.results import BatchStatus, ResultStore

DEDUPE_CHUNK = 1000
MAX_INVALID_SAMPLES = 20


class InvalidBatch(CloserError):
    """``close_many(..., on_invalid="abort")`` found invalid IDs; nothing was enqueued."""

    def __init__(self, invalid_count: int, samples: list[str]) -> None:
        super().__init__(invalid_count, samples)
        self.invalid_count = invalid_count
        self.samples = samples

    def __str__(self) -> str:
        return f"{self.invalid_count} invalid conversation id(s), nothing enqueued: " + "; ".join(self.samples)


class BatchNotFound(CloserError):
    def __init__(self, batch_id: str) -> None:
        super().__init__(batch_id)
        self.batch_id = batch_id

    def __str__(self) -> str:
        return f"no batch {self.batch_id!r} (unknown, or older than the retention period)"


def validate_options(options: dict[str, Any] | None) -> dict[str, Any]:
    """Close options as sent with each task, checked now rather than in every worker."""
    options = dict(options or {})
    CloseOptions().with_overrides(options)
    return {k: (v.value if hasattr(v, "value") else v) for k, v in options.items()}


class Batch:
    """A handle on one batch; its state lives in Redis."""

    def __init__(self, client: CloseClient, batch_id: str) -> None:
        self.client = client
        self.id = batch_id

    def __repr__(self) -> str:
        return f"Batch({self.id!r})"

    def status(self) -> BatchStatus:
        status = self.client.results.batch_status(self.id)
        if status is None:
            raise BatchNotFound(self.id)
        return status

    def wait(self, timeout: float | None = None, *, poll_seconds: float = 0.5,
             progress: Callable[[BatchStatus], None] | None = None) -> BatchStatus:
        """Block until every item has an outcome (or ``timeout``); call ``progress`` with each status read."""
        deadline = None if timeout is None else time.monotonic() + timeout
        while True:
            status = self.status()
            if progress is not None:
                progress(status)
            if status.finished:
                return status
            if deadline is not None and time.monotonic() >= deadline:
                raise TimeoutError(f"batch {self.id} not finished after {timeout} s: {status.done}/{status.total}")
            time.sleep(poll_seconds)

    def cancel(self) -> BatchStatus:
        """Items not yet run end as ``cancelled``; items already running finish normally."""
        self.status()
        self.client.results.set_state(self.id, "cancelled", "cancelled by operator")
        return self.status()

    def results(self) -> Iterator[CloseResult]:
        return self.client.results.iter_items(self.id)


class CloseClient:
    """Enqueue closes and follow batches, over Redis only."""

    def __init__(self, settings: Settings | None = None, *, app: Celery | None = None) -> None:
        self.settings = settings or get_settings()
        self.app = app or create_app(self.settings)
        self.redis = connect(self.settings.redis_url)
        self.results = ResultStore(self.redis, self.settings.results_ttl_seconds)

    def close(self, conversation_id: str, *, wait: bool = False, timeout: float = 60.0,
              **options: Any) -> str | CloseResult:
        """Enqueue one close on the interactive queue; with ``wait`` return its outcome record."""
        canonical = parse_conversation_id(conversation_id)
        task = self.app.send_task(TASK_NAME, args=[canonical], kwargs=validate_options(options),
                                  queue=QUEUE_INTERACTIVE)
        if not wait:
            return str(task.id)
        return CloseResult.from_dict(task.get(timeout=timeout, propagate=True))

    def close_many(self, conversation_ids: Iterable[object], *, label: str = "", source: str = "",
                   options: dict[str, Any] | None = None, on_invalid: str = "record",
                   queue: str = QUEUE_BULK, batch_id: str | None = None) -> Batch:
        """Start a batch. Every ID is validated before any is enqueued; the input is streamed (spooled to a
        temporary file, never held in memory); duplicates are dropped; all tasks go out over one connection.

        ``on_invalid="record"`` records each invalid ID as an ``invalid_id`` item and still closes the valid
        ones; ``"abort"`` raises InvalidBatch and enqueues nothing.
        """
        if on_invalid not in {"record", "abort"}:
            raise ValueError("on_invalid must be 'record' or 'abort'")
        kwargs = validate_options(options)
        batch_id = batch_id or uuid.uuid4().hex
        self.results.create_batch(batch_id, label=label, source=source, options=json.dumps(kwargs), queue=queue)
        with tempfile.TemporaryFile("w+", encoding="ascii") as spool:
            valid, invalid, samples = self._validate_into(spool, batch_id, conversation_ids)
            if invalid and on_invalid == "abort":
                self.results.discard_batch(batch_id)
                raise InvalidBatch(invalid, samples)
            spool.seek(0)
            self.publish_items(batch_id, (line.strip() for line in spool), kwargs, queue)
        self.results.mark_enqueued(batch_id, valid + invalid)
        return Batch(self, batch_id)

    def _validate_into(self, spool: Any, batch_id: str, raw_ids: Iterable[object]) -> tuple[int, int, list[str]]:
        valid = invalid = 0
        samples: list[str] = []
        chunk: list[str] = []

        def flush() -> int:
            fresh = self.results.add_unseen(batch_id, chunk)
            spool.writelines(f"{cid}\n" for cid in fresh)
            chunk.clear()
            return len(fresh)

        for position, raw in enumerate(raw_ids, start=1):
            try:
                chunk.append(parse_conversation_id(raw))
            except InvalidConversationId as exc:
                invalid += 1
                if len(samples) < MAX_INVALID_SAMPLES:
                    samples.append(f"item {position}: {exc}")
                shown = raw if isinstance(raw, str) else repr(raw)
                self.results.record(
                    CloseResult(conversation_id=shown[:100], outcome=Outcome.INVALID_ID, attempts=0,
                                started_at=time.time(), finished_at=time.time(), error=f"item {position}: {exc}",
                                batch_id=batch_id),
                    item_key=f"invalid:{position}")
                continue
            if len(chunk) >= DEDUPE_CHUNK:
                valid += flush()
        if chunk:
            valid += flush()
        return valid, invalid, samples

    def publish_items(self, batch_id: str, conversation_ids: Iterable[str], kwargs: dict[str, Any],
                      queue: str) -> int:
        """Publish one close task per (already validated) ID, all over one broker connection."""
        count = 0
        with self.app.producer_or_acquire() as producer:
            for conversation_id in conversation_ids:
                self.app.send_task(TASK_NAME, args=[conversation_id], kwargs={"batch_id": batch_id, **kwargs},
                                   queue=queue, producer=producer)
                count += 1
        return count

    def batch(self, batch_id: str) -> Batch:
        batch = Batch(self, batch_id)
        batch.status()
        return batch

    def batches(self, limit: int = 20) -> list[BatchStatus]:
        return self.results.recent_batches(limit)

    def outcome(self, conversation_id: str) -> CloseResult | None:
        return self.results.outcome(parse_conversation_id(conversation_id))


@functools.cache
def default_client() -> CloseClient:
    return CloseClient()


def close(conversation_id: str, *, wait: bool = False, timeout: float = 60.0, **options: Any) -> str | CloseResult:
    """Module-level shortcut for ``CloseClient().close``."""
    return default_client().close(conversation_id, wait=wait, timeout=timeout, **options)


def close_many(conversation_ids: Iterable[object], **kwargs: Any) -> Batch:
    """Module-level shortcut for ``CloseClient().close_many``."""
    return default_client().close_many(conversation_ids, **kwargs)
