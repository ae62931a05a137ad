"""The producer API: enqueue closes and follow batches. Needs only ``REDIS_URL``, never Genesys credentials, and
imports none of the worker's Genesys dependencies (requests, tenacity, cryptography).

    from genesys_closer import close_conversation
    close_conversation.delay("3b47a74f-...")      # -> AsyncResult (interactive queue)

    client = CloseClient()                      # settings from the environment; the org "default"
    client = CloseClient(org="eu-prod")         # every close, batch, sweep and read of this client is eu-prod's
    close_conversation.delay("3b47a74f-...", org="eu-prod")
    client.close("3b47a74f-...")                 # -> task id
    client.close("3b47a74f-...", wait=True)      # -> CloseResult
    batch = client.close_many(open("ids.txt"))   # validates every ID first, streams them into Redis, feeds workers
    batch.wait(progress=print)                   # -> BatchStatus
"""

from __future__ import annotations

import copy
import functools
import itertools
import time
import uuid
from collections.abc import Callable, Iterable, Iterator
from typing import Any

from celery import Celery
from celery.result import AsyncResult

from genesys_closer.config.errors import CloserError
from genesys_closer.config.orgs import DEFAULT_ORG
from genesys_closer.config.redis_keys import keys_for
from genesys_closer.config.settings import ClosePolicy, ProducerSettings, get_producer_settings
from genesys_closer.shared import arguments
from genesys_closer.shared.arguments import InvalidArgument
from genesys_closer.shared.batches import BatchIdInUse, BatchWriter, IdCheck, InvalidBatch, check_ids
from genesys_closer.shared.celery_config import producer_app
from genesys_closer.shared.ids import parse_conversation_id
from genesys_closer.shared.names import (
    QUEUE_BULK,
    QUEUE_INTERACTIVE,
    QUEUES,
    SWEEP_TASK_NAME,
    TASK_NAME,
    org_kwargs,
)
from genesys_closer.shared.options import CloseOptions
from genesys_closer.shared.outcomes import CloseResult
from genesys_closer.shared.redis_connection import await_replicas, connect
from genesys_closer.shared.stores import ResultStores
from genesys_closer.shared.stores.batch_store import BatchStatus, is_batch_id
from genesys_closer.shared.sweep_filters import SweepFilters

__all__ = [
    "Batch",
    "BatchIdInUse",
    "BatchNotFound",
    "CloseClient",
    "IdCheck",
    "InvalidArgument",
    "InvalidBatch",
    "SweepRequest",
    "close",
    "close_conversation",
    "close_many",
]


class BatchNotFound(CloserError):
    def __init__(self, batch_id: str) -> None:
        super().__init__(batch_id)
        self.batch_id = batch_id

    def __str__(self) -> str:
        return f"no batch {self.batch_id[:100]!r} (unknown, or older than the retention period)"


# Celery send options a standalone close takes besides ``countdown`` and ``queue`` (which are named arguments).
SEND_OPTIONS = ("priority",)
MAX_PRIORITY = 9  # Celery's Redis transport has priorities 0 (first) to 9


def validate_options(options: dict[str, Any] | None) -> dict[str, Any]:
    """Close options as sent with each task, checked now rather than in every worker."""
    options = arguments.mapping("options", options)
    CloseOptions().with_overrides(options)
    return {k: (v.value if isinstance(v, ClosePolicy) else v) for k, v in options.items()}


FIRST_POLL_SECONDS = 0.05  # the first wait between two reads of a batch's status (``Batch.wait``)


class Batch:
    """A handle on one batch; its state lives in Redis."""

    def __init__(self, client: CloseClient, batch_id: str, check: IdCheck | None = None) -> None:
        if not is_batch_id(batch_id):
            raise InvalidArgument(f"a batch id is 32 lower-case hexadecimal digits; got {repr(batch_id)[:60]}")
        self.client = client
        self.id = batch_id
        self.check = check  # what validating its input found, for a batch started by this handle

    def __repr__(self) -> str:
        return f"Batch({self.id!r})"

    def status(self) -> BatchStatus:
        status = self.client.results.batches.status(self.id)
        if status is None:
            raise BatchNotFound(self.id)
        return status

    def wait(self, timeout: float | None = None, *, poll_seconds: float = 0.5,
             progress: Callable[[BatchStatus], None] | None = None) -> BatchStatus:
        """Block until every item has an outcome (or ``timeout``); call ``progress`` with each status read. Reads
        start ``FIRST_POLL_SECONDS`` apart and grow by half each time up to ``poll_seconds``: a small batch is seen
        finished within a few hundredths of a second of its last outcome, a long one costs one read per
        ``poll_seconds``."""
        timeout = arguments.optional_seconds("timeout", timeout)
        poll_seconds = arguments.seconds("poll_seconds", poll_seconds, positive=True)
        arguments.callback("progress", progress)
        deadline = None if timeout is None else time.monotonic() + timeout
        interval = min(FIRST_POLL_SECONDS, poll_seconds)
        while True:
            status = self.status()
            if progress is not None:
                progress(status)
            if status.finished:
                return status
            if deadline is not None and time.monotonic() >= deadline:
                raise TimeoutError(f"batch {self.id} not finished after {timeout} s: {status.done}/{status.total}")
            time.sleep(interval)
            interval = min(interval * 1.5, poll_seconds)

    def cancel(self) -> BatchStatus:
        """Items not yet run end as ``cancelled``; items already running finish normally. A finished, cancelled or
        stopped batch stays as it is (decided atomically in Redis: a batch that finishes meanwhile is not
        overwritten). Nothing more is fed at once; a worker records the items never fed (the feed task)."""
        self.status()  # BatchNotFound for an unknown batch
        self.client.results.batches.cancel(self.id, "cancelled by operator")
        self.client.batches_writer.feeder.kick()
        return self.status()

    def results(self) -> Iterator[CloseResult]:
        return self.client.results.batches.items(self.id)


class SweepRequest:
    """A sweep queued for a worker (the query needs Genesys credentials)."""

    def __init__(self, client: CloseClient, task: AsyncResult) -> None:
        self.client = client
        self.task = task
        self.id = str(task.id)

    def wait(self, timeout: float | None = None) -> dict[str, Any]:
        """The sweep's summary: candidates, chosen, pages, intervals, ``batch_id`` (or ``error``/``skipped``)."""
        timeout = arguments.optional_seconds("timeout", timeout)
        summary: dict[str, Any] = self.task.get(timeout=timeout)
        return summary

    def candidates(self) -> Iterator[dict[str, Any]]:
        """Every candidate the sweep considered, with ``chosen`` and its ``reason``."""
        return self.client.results.sweeps.candidates(self.id)


class CloseClient:
    """Enqueue closes and follow batches of one Genesys org (``org``, default ``default``), over Redis only: its
    closes, batches and sweeps are sent for that org, and it reads only that org's records."""

    def __init__(self, settings: ProducerSettings | None = None, *, app: Celery | None = None,
                 org: str | None = None) -> None:
        self.org = arguments.org(org)
        self.settings = settings or get_producer_settings()
        self.app = app or producer_app(self.settings)
        self.redis = connect(self.settings.redis_target, caller=True)  # a hung Redis is said within seconds
        self.results = ResultStores.open(self.redis, self.settings.results_ttl_seconds, keys=keys_for(self.org))
        self.batches_writer = BatchWriter(self.app, self.results, time.time,
                                          lease_seconds=self.settings.batch_enqueue_lease_seconds,
                                          in_flight=self.settings.batch_in_flight)

    def for_org(self, org: str) -> CloseClient:
        """A client of ``org`` sharing this one's settings, Celery app and Redis connection (one per org a server
        acts for, not one connection each)."""
        org = arguments.org(org)
        if org == self.org:
            return self
        other = copy.copy(self)
        other.org = org
        other.results = ResultStores.open(self.redis, self.settings.results_ttl_seconds, keys=keys_for(org))
        other.batches_writer = BatchWriter(self.app, other.results, time.time,
                                           lease_seconds=self.settings.batch_enqueue_lease_seconds,
                                           in_flight=self.settings.batch_in_flight)
        return other

    def close(self, conversation_id: str, *, wait: bool = False, timeout: float = 60.0,
              countdown: float | None = None, org: str | None = None, **options: Any) -> str | CloseResult:
        """Enqueue one close on the interactive queue; with ``wait`` return its outcome record. ``countdown``
        delays it (at most the broker's safe window, see ``ProducerSettings.max_countdown_seconds``); ``org``
        (default: this client's) names the org it is for."""
        if org is not None:
            return self.for_org(org).close(conversation_id, wait=wait, timeout=timeout, countdown=countdown,
                                           **options)
        arguments.flag("wait", wait)
        timeout = arguments.seconds("timeout", timeout)
        task_id = self.send_close(conversation_id, options, countdown=countdown)
        if not wait:
            return task_id
        return self.result(task_id, timeout=timeout)

    def send_close(self, conversation_id: object, options: dict[str, Any] | None = None, *,
                   countdown: float | None = None, queue: str = QUEUE_INTERACTIVE, **send_options: Any) -> str:
        """Validate and enqueue one standalone close; returns its task id. The close is tracked until its outcome is
        recorded, so a message the broker loses is sent again (``worker.recovery.redrive``)."""
        canonical = parse_conversation_id(conversation_id)
        kwargs = validate_options(options)
        queue = arguments.one_of("queue", queue, QUEUES)
        if "eta" in send_options:
            raise InvalidArgument("use countdown (seconds), not eta")
        arguments.known_names("send option(s)", send_options, ("countdown", "queue", *SEND_OPTIONS))
        arguments.whole_number("priority", send_options.get("priority", 0), 0, MAX_PRIORITY)
        if countdown is not None:
            window = self.settings.max_countdown_seconds
            if isinstance(countdown, bool) or not isinstance(countdown, int | float) or not 0 <= countdown <= window:
                raise InvalidArgument(f"countdown must be between 0 and {window} s (the broker would redeliver a "
                                      "message waiting longer while the first copy waits; enqueue it later instead); "
                                      f"got {repr(countdown)[:60]}")
        task_id = str(uuid.uuid4())
        self.results.pending.track(task_id, canonical, kwargs, queue)
        try:
            self.app.send_task(TASK_NAME, args=[canonical], kwargs={**kwargs, **org_kwargs(self.org)}, queue=queue,
                               task_id=task_id,
                               countdown=countdown, **send_options)
        except BaseException:
            self.results.pending.forget(task_id)
            raise
        await_replicas(self.redis, self.settings.redis_wait_replicas)  # tracked and queued, on a replica too
        return task_id

    def result(self, task_id: str, timeout: float = 60.0) -> CloseResult:
        """The outcome record of a close enqueued with ``close``; TimeoutError if it has not ended in time.

        Polls the result backend (plain reads: safe from any thread, unlike a pub/sub wait)."""
        if not isinstance(task_id, str) or not task_id:
            raise InvalidArgument(f"task_id must be the id close() returned; got {repr(task_id)[:60]}")
        timeout = arguments.seconds("timeout", timeout)
        deadline = time.monotonic() + timeout
        interval = 0.05
        while True:
            result = self.poll_result(task_id)
            if result is not None:
                return result
            if time.monotonic() >= deadline:
                raise TimeoutError(f"close {task_id} has no outcome after {timeout:g} s; it stays queued")
            time.sleep(interval)
            interval = min(interval * 1.5, 0.5)

    def poll_result(self, task_id: str) -> CloseResult | None:
        """The outcome record of a close if it has ended, else None (one read of the result backend)."""
        meta = self.app.backend.get_task_meta(task_id)
        if meta.get("status") == "SUCCESS" and isinstance(meta.get("result"), dict):
            return CloseResult.from_dict(meta["result"])
        if meta.get("status") in {"FAILURE", "REVOKED"}:
            raise CloserError(f"close {task_id} ended {meta.get('status')}: {str(meta.get('result'))[:200]}")
        return None

    def close_many(self, conversation_ids: Iterable[object], *, label: str = "", source: str = "",
                   options: dict[str, Any] | None = None, on_invalid: str = "record",
                   queue: str = QUEUE_BULK, batch_id: str | None = None, org: str | None = None) -> Batch:
        """Start a batch (see ``BatchWriter.start_checked``): every ID is validated before any is enqueued, the input
        is streamed into Redis, duplicates are dropped; the items are fed to the broker ``BATCH_IN_FLIGHT`` at a
        time (``shared.feeder``).

        ``on_invalid`` is ``"record"`` (invalid IDs become ``invalid_id`` items) or ``"abort"`` (InvalidBatch, nothing
        enqueued); ``queue`` one of the worker queues; ``batch_id`` (optional, 32 hex digits) must not be in use
        (BatchIdInUse). Any other value raises InvalidArgument (a ValueError) before anything is written, and so
        does an input with no item at all (as the CLI and the intake refuse an empty one). ``org`` (default: this
        client's) names the org the batch is for; the returned handle reads it there."""
        if org is not None:
            return self.for_org(org).close_many(conversation_ids, label=label, source=source, options=options,
                                                on_invalid=on_invalid, queue=queue, batch_id=batch_id)
        if isinstance(conversation_ids, str | bytes):
            raise InvalidArgument("conversation_ids must be an iterable of conversation ids, not one string")
        items = iter(conversation_ids)
        first = next(items, _NOTHING)
        if first is _NOTHING:
            raise InvalidArgument("conversation_ids holds no conversation id: an empty batch is not started")
        conversation_ids = itertools.chain([first], items)
        started, check = self.batches_writer.start_checked(
            conversation_ids, options=validate_options(options), label=label, source=source, on_invalid=on_invalid,
            queue=queue, batch_id=batch_id)
        await_replicas(self.redis, self.settings.redis_wait_replicas)  # the batch and its items, on a replica too
        return Batch(self, started, check)

    def check_ids(self, conversation_ids: Iterable[object]) -> IdCheck:
        """Validate and count without enqueuing anything (a dry run)."""
        if isinstance(conversation_ids, str | bytes):
            raise InvalidArgument("conversation_ids must be an iterable of conversation ids, not one string")
        return check_ids(conversation_ids)

    def sweep(self, filters: dict[str, Any], *, dry_run: bool = False,
              options: dict[str, Any] | None = None) -> SweepRequest:
        """Queue a sweep; a worker queries Genesys and (unless ``dry_run``) starts a batch of the chosen ones.
        Unknown filters or wrong values raise InvalidArgument here (the worker checks them again)."""
        filters = arguments.mapping("filters", filters)
        try:
            SweepFilters.from_dict(filters)
        except ValueError as exc:
            raise InvalidArgument(str(exc)[:1000]) from None
        arguments.flag("dry_run", dry_run)
        task = self.app.send_task(SWEEP_TASK_NAME, kwargs={"filters": filters, "dry_run": dry_run,
                                                            "options": validate_options(options),
                                                            **org_kwargs(self.org)})
        return SweepRequest(self, task)

    def batch(self, batch_id: str) -> Batch:
        batch = Batch(self, batch_id)
        batch.status()
        return batch

    def batches(self, limit: int = 20) -> list[BatchStatus]:
        return self.results.batches.recent(arguments.limit("limit", limit))

    def outcome(self, conversation_id: str) -> CloseResult | None:
        return self.results.outcomes.latest(parse_conversation_id(conversation_id))

    def rejected(self, limit: int = 20) -> list[dict[str, Any]]:
        """The most recent messages the workers refused before running them, newest first."""
        return self.results.rejected.recent(arguments.limit("limit", limit))


@functools.cache
def default_client(org: str = DEFAULT_ORG) -> CloseClient:
    """The process's client of ``org`` (the module-level shortcuts' and ``close_conversation``'s)."""
    return CloseClient(org=org)


class CloseConversationTask:
    """``close_conversation.delay(id)`` (or ``.delay(id, org="eu-prod")``) for apps that install this package:
    validates the ID, org and options, then sends the worker's task by name over the producer's app (only
    ``REDIS_URL`` is read)."""

    name = TASK_NAME

    def delay(self, conversation_id: str, **options: Any) -> AsyncResult:
        return self.apply_async((conversation_id,), options)

    def apply_async(self, args: tuple[Any, ...] = (), kwargs: dict[str, Any] | None = None,
                    **send_options: Any) -> AsyncResult:
        if len(args) != 1:
            raise TypeError("close_conversation takes one conversation id")
        options = dict(arguments.mapping("options", kwargs))
        client = default_client(arguments.org(options.pop("org", None)))
        return client.app.AsyncResult(client.send_close(args[0], options, **send_options))


close_conversation = CloseConversationTask()


def close(conversation_id: str, *, wait: bool = False, timeout: float = 60.0, org: str | None = None,
          **options: Any) -> str | CloseResult:
    """Module-level shortcut for ``CloseClient(org=org).close``."""
    return default_client(arguments.org(org)).close(conversation_id, wait=wait, timeout=timeout, **options)


_NOTHING = object()


def close_many(conversation_ids: Iterable[object], *, org: str | None = None, **kwargs: Any) -> Batch:
    """Module-level shortcut for ``CloseClient(org=org).close_many``."""
    return default_client(arguments.org(org)).close_many(conversation_ids, **kwargs)
