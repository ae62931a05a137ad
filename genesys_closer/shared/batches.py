"""Starting batches: validate every ID, de-duplicate, store the valid ones in the batch's feed, mark the batch
enqueued, and feed its first items to the broker (``shared.feeder`` feeds the rest as items end).

Shared by the producer API (bulk lists, retries) and the worker (sweeps, the stalled-batch redrive), so that every
batch is built the same way. Needs Redis and a Celery app that can publish; no Genesys credentials.
"""

from __future__ import annotations

import json
import uuid
from collections.abc import Callable, Iterable
from dataclasses import dataclass, field
from typing import Any

from celery import Celery

from genesys_closer.config.errors import CloserError
from genesys_closer.shared import arguments
from genesys_closer.shared.enqueue_lease import LEASE_SECONDS, EnqueueLease
from genesys_closer.shared.feeder import BatchFeeder
from genesys_closer.shared.ids import InvalidConversationId, parse_conversation_id
from genesys_closer.shared.names import (
    FEED_TASK_NAME,
    QUEUE_BULK,
    QUEUE_INTERACTIVE,
    QUEUES,
    TASK_NAME,
    org_kwargs,
)
from genesys_closer.shared.outcomes import CloseResult, Outcome
from genesys_closer.shared.stores import ResultStores
from genesys_closer.shared.stores.batch_store import is_batch_id

ORIGIN_LIST = "list"
ORIGIN_SWEEP = "sweep"
ORIGINS = (ORIGIN_LIST, ORIGIN_SWEEP)
ON_INVALID_RECORD = "record"  # each invalid ID becomes an ``invalid_id`` item; the valid ones are closed
ON_INVALID_ABORT = "abort"    # any invalid ID: InvalidBatch, nothing enqueued
ON_INVALID = (ON_INVALID_RECORD, ON_INVALID_ABORT)
DEDUPE_CHUNK = 1000
MAX_INVALID_SAMPLES = 20
MAX_ECHO = 100
PUBLISH_CHUNK = 500  # items published between two checks of the enqueue lease
IN_FLIGHT = 300  # BATCH_IN_FLIGHT's default


class InvalidBatch(CloserError):
    """``on_invalid="abort"`` found invalid IDs; nothing was enqueued."""

    def __init__(self, invalid_count: int, samples: list[str]) -> None:
        super().__init__(invalid_count, samples)
        self.invalid_count = invalid_count
        self.samples = samples

    def __str__(self) -> str:
        return f"{self.invalid_count} invalid conversation id(s), nothing enqueued: " + "; ".join(self.samples)


class BatchIdInUse(arguments.InvalidArgument):
    """``batch_id`` names a batch that exists (or existed within the retention period): it is never overwritten."""

    def __init__(self, batch_id: str) -> None:
        super().__init__(batch_id)
        self.batch_id = batch_id

    def __str__(self) -> str:
        return f"batch id {self.batch_id} is in use: an existing batch is never overwritten (omit batch_id)"


def new_batch_id() -> str:
    return uuid.uuid4().hex


@dataclass
class IdCheck:
    """What validating a list of IDs found (a dry run)."""

    valid: int = 0
    invalid: int = 0
    duplicates: int = 0
    samples: list[str] = field(default_factory=list)

    def add_invalid(self, position: int, error: InvalidConversationId) -> str:
        self.invalid += 1
        sample = f"item {position}: {error}"
        if len(self.samples) < MAX_INVALID_SAMPLES:
            self.samples.append(sample)
        return sample

    def as_dict(self) -> dict[str, Any]:
        return {"dry_run": True, "valid": self.valid, "invalid": self.invalid, "duplicates": self.duplicates,
                "invalid_samples": list(self.samples)}


def check_ids(raw_ids: Iterable[object]) -> IdCheck:
    """Validate and de-duplicate without enqueuing (memory grows with the number of unique IDs: 16 bytes each)."""
    report = IdCheck()
    seen: set[bytes] = set()
    for position, raw in enumerate(raw_ids, start=1):
        try:
            key = bytes.fromhex(parse_conversation_id(raw).replace("-", ""))
        except InvalidConversationId as exc:
            report.add_invalid(position, exc)
            continue
        if key in seen:
            report.duplicates += 1
        else:
            seen.add(key)
            report.valid += 1
    return report


@dataclass
class StagedBatch:
    """A batch whose items are validated and stored, not yet published (see ``BatchWriter.stage``)."""

    batch_id: str
    check: IdCheck
    options: dict[str, Any]
    queue: str
    lease: EnqueueLease


class BatchWriter:
    """Builds batches in Redis and publishes their close tasks through ``app`` (a batch's items through its
    ``feeder``, at most ``in_flight`` at a time)."""

    def __init__(self, app: Celery, results: ResultStores, clock: Callable[[], float], *,
                 lease_seconds: float = LEASE_SECONDS, in_flight: int = IN_FLIGHT,
                 pace_in_flight: int | None = None) -> None:
        self.app = app
        self.results = results
        self.clock = clock
        self.lease_seconds = lease_seconds
        self.org_kwargs = org_kwargs(results.batches.keys.org)  # every task it sends names its org
        self.feeder = BatchFeeder(results, self.publish, in_flight, kick=self.send_feed_task, clock=clock,
                                  pace=pace_in_flight)

    def start(self, conversation_ids: Iterable[object], *, options: dict[str, Any], label: str = "",
              source: str = "", on_invalid: str = ON_INVALID_RECORD, queue: str = QUEUE_BULK,
              batch_id: str | None = None, origin: str = ORIGIN_LIST) -> str:
        """Start a batch and return its id (see ``start_checked``)."""
        return self.start_checked(conversation_ids, options=options, label=label, source=source,
                                  on_invalid=on_invalid, queue=queue, batch_id=batch_id, origin=origin)[0]

    def start_checked(self, conversation_ids: Iterable[object], *, options: dict[str, Any], label: str = "",
                      source: str = "", on_invalid: str = ON_INVALID_RECORD, queue: str = QUEUE_BULK,
                      batch_id: str | None = None, origin: str = ORIGIN_LIST) -> tuple[str, IdCheck]:
        """Start a batch; return its id and what validating its input found (``stage``, then ``publish_staged``).

        Every ID is validated before any is enqueued; the input is streamed (never held in memory) into the batch's
        feed in Redis; duplicates are dropped; the first ``in_flight`` items are published, the rest as items end.
        ``origin`` is ``list`` (any producer) or ``sweep`` (only the worker's sweep, whose candidates are known open
        web messaging: their closes skip the first read). ``on_invalid="record"`` records each invalid ID as an
        ``invalid_id`` item and still closes the valid ones; ``"abort"`` raises InvalidBatch and enqueues nothing.
        An input that fails while being read discards the batch (no half-made batch is left behind).

        Every argument is checked before anything is written: an unknown ``on_invalid``, ``queue`` or ``origin``
        raises InvalidArgument, a ValueError (a batch whose items could never all be counted would wait forever),
        and so does a ``batch_id`` in use (BatchIdInUse: refused atomically, the existing batch is untouched).
        """
        staged = self.stage(conversation_ids, options=options, label=label, source=source, on_invalid=on_invalid,
                            queue=queue, batch_id=batch_id, origin=origin)
        self.publish_staged(staged)
        return staged.batch_id, staged.check

    def stage(self, conversation_ids: Iterable[object], *, options: dict[str, Any], label: str = "",
              source: str = "", on_invalid: str = ON_INVALID_RECORD, queue: str = QUEUE_BULK,
              batch_id: str | None = None, origin: str = ORIGIN_LIST) -> StagedBatch:
        """Validate and store a batch's items (state ``enqueuing``, ``total`` known, readable by its status, the
        valid IDs in its feed) without publishing any; ``publish_staged`` starts feeding them. The caller holds the
        returned batch's enqueue lease: if it dies before ``publish_staged`` ends, the recovery starts feeding it
        (``shared.enqueue_lease``). Arguments are checked first (see ``start_checked``)."""
        on_invalid = arguments.one_of("on_invalid", on_invalid, ON_INVALID)
        queue = arguments.one_of("queue", queue, QUEUES)
        origin = arguments.one_of("origin", origin, ORIGINS)
        label, source = arguments.text("label", label), arguments.text("source", source)
        if isinstance(conversation_ids, str | bytes):
            raise arguments.InvalidArgument("conversation_ids must be an iterable of ids, not one string")
        if batch_id is None:
            batch_id = new_batch_id()
        elif not is_batch_id(batch_id):
            raise arguments.InvalidArgument(f"a batch id is 32 lower-case hex digits; got {repr(batch_id)[:60]}")
        lease = EnqueueLease(self.results.batches.redis, batch_id, self.lease_seconds, keys=self.results.batches.keys)
        if not lease.take():  # another producer is enqueuing a batch of this id
            raise BatchIdInUse(batch_id)
        if not self.results.batches.create(batch_id, label=label, source=source, options=json.dumps(options),
                                           queue=queue, origin=origin):
            lease.release()
            raise BatchIdInUse(batch_id)
        self.results.batches.track_enqueuing(batch_id)
        self.feeder.prepare(batch_id)

        def give_up() -> None:
            self.results.batches.discard(batch_id)
            lease.release()

        try:
            check = self._validate_into(batch_id, conversation_ids, record_invalid=on_invalid == ON_INVALID_RECORD,
                                        lease=lease)
            abort = bool(check.invalid) and on_invalid == ON_INVALID_ABORT
            if not abort:
                self.results.batches.mark_staged(batch_id, check.valid + check.invalid)
        except BaseException:
            give_up()
            raise
        if abort:
            give_up()
            raise InvalidBatch(check.invalid, check.samples)
        return StagedBatch(batch_id, check, options, queue, lease)

    def publish_staged(self, staged: StagedBatch) -> int:
        """Mark a staged batch enqueued and feed its first items; returns how many were published. Does nothing
        (the recovery finishes the batch) if the lease was lost; always releases the lease."""
        try:
            if not staged.lease.keep():
                return 0
            self.results.batches.mark_enqueued(staged.batch_id, staged.check.valid + staged.check.invalid)
            return self.feeder.start(staged.batch_id)
        finally:
            staged.lease.release()

    def send_feed_task(self) -> None:
        """Ask a worker to advance the fed batches (``BatchFeeder.advance_all``)."""
        self.app.send_task(FEED_TASK_NAME, kwargs=self.org_kwargs, queue=QUEUE_INTERACTIVE, ignore_result=True)

    def _validate_into(self, batch_id: str, raw_ids: Iterable[object], *,
                       record_invalid: bool, lease: EnqueueLease) -> IdCheck:
        check = IdCheck()
        chunk: list[str] = []

        def flush() -> None:
            fresh = self.results.batches.add_members(batch_id, chunk)
            check.valid += len(fresh)
            check.duplicates += len(chunk) - len(fresh)
            self.feeder.append(batch_id, fresh)
            chunk.clear()
            lease.keep()

        for position, raw in enumerate(raw_ids, start=1):
            try:
                chunk.append(parse_conversation_id(raw))
            except InvalidConversationId as exc:
                sample = check.add_invalid(position, exc)
                if record_invalid:
                    shown = raw if isinstance(raw, str) else repr(raw)
                    now = self.clock()
                    self.results.outcomes.record(
                        CloseResult(conversation_id=shown[:MAX_ECHO], outcome=Outcome.INVALID_ID, attempts=0,
                                    started_at=now, finished_at=now, error=sample, batch_id=batch_id),
                        item_key=f"invalid:{position}")
                continue
            if len(chunk) >= DEDUPE_CHUNK:
                flush()
        if chunk:
            flush()
        return check

    def publish_close(self, conversation_id: str, options: dict[str, Any], queue: str,
                      task_id: str | None = None) -> str:
        """Publish one standalone close (no batch) under ``task_id`` (absent: a new one); returns its task id."""
        return str(self.app.send_task(TASK_NAME, args=[conversation_id], kwargs={**options, **self.org_kwargs},
                                      queue=queue, task_id=task_id, ignore_result=True).id)

    def publish(self, batch_id: str, conversation_ids: Iterable[str], options: dict[str, Any], queue: str, *,
                lease: EnqueueLease | None = None) -> int:
        """Publish one close task per (already validated) ID, all over one broker connection; with ``lease``,
        extend it as it goes and stop when it is lost (its new holder publishes the rest). A batch's items reach
        this through its feeder, or as items already in flight (a batched check's next stage, a re-sent one)."""
        count = 0
        with self.app.producer_or_acquire() as producer:
            for conversation_id in conversation_ids:
                if lease is not None and count % PUBLISH_CHUNK == 0 and not lease.keep():
                    break
                # Batch items store no Celery result: their outcomes live in the batch (shared.stores.batch_store).
                kwargs = {"batch_id": batch_id, **options, **self.org_kwargs}
                self.app.send_task(TASK_NAME, args=[conversation_id], kwargs=kwargs, queue=queue, producer=producer,
                                   ignore_result=True)
                count += 1
        return count
