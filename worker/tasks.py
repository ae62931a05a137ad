"""Celery tasks. Thin: the work is in ``close_run``, ``recovery`` and ``sweep_run``.

Arguments are IDs, plain options and the org's name only (Flower shows them: ``org="eu-prod"``, never a
credential); results are outcome records (no token, no secret). Every task of an org other than ``default``
carries ``org``; an org this deployment does not serve is refused (``invalid_request``) before any Genesys call.
Time limits come from the app's configuration (the sweep's from ``task_annotations``), never from settings read
here.
"""

from __future__ import annotations

import logging
import os
from typing import Any

from celery.exceptions import Ignore, Reject, Retry, SoftTimeLimitExceeded
from celery.signals import task_revoked

from genesys_closer.config.orgs import DEFAULT_ORG
from genesys_closer.config.settings import get_org_settings
from genesys_closer.shared.logging_setup import org_context
from genesys_closer.shared.names import (
    CHECKS_TASK_NAME,
    FEED_TASK_NAME,
    PROBE_TASK_NAME,
    QUEUE_INTERACTIVE,
    READINESS_TASK_NAME,
    REDRIVE_TASK_NAME,
    SWEEP_TASK_NAME,
    TASK_NAME,
)
from genesys_closer.shared.outcomes import Outcome
from genesys_closer.worker.app import app
from genesys_closer.worker.factory import UnknownOrg, every_org_parts, record_rejected, worker_parts
from genesys_closer.worker.ops.readiness import ready, run_checks
from genesys_closer.worker.ops.task_events import report_waiting, shown
from genesys_closer.worker.running.close_run import RetryLater, TaskContext, Waiting

log = logging.getLogger("genesys_closer.worker")
GUARDED: dict[str, Any] = {
    "Strategy": "genesys_closer.worker.broker.message_bounds:bounded_strategy",  # every message is bounded first
}


@app.task(bind=True, name=TASK_NAME, max_retries=None, **GUARDED)  # type: ignore[untyped-decorator]
def close_conversation(self: Any, conversation_id: str, batch_id: str | None = None, org: str | None = None,
                       **options: Any) -> dict[str, Any]:
    """Close one Genesys Cloud web messaging conversation of ``org`` (absent: ``default``); returns its outcome
    record (its outcome first, as Flower shows it). A batch item that goes to wait for a batched read ends in the
    state WAITING instead (``worker.ops.task_events``): its outcome comes later."""
    try:
        parts = worker_parts(org)
    except UnknownOrg as exc:
        return record_rejected(TASK_NAME, str(self.request.id), [[conversation_id], {"batch_id": batch_id, "org": org},
                                                                 None], str(exc))
    delivery = self.request.delivery_info or {}
    context = TaskContext(task_id=str(self.request.id), retries=int(self.request.retries),
                          batch_id=batch_id if isinstance(batch_id, str) or batch_id is None else repr(batch_id)[:80],
                          queue=str(delivery.get("routing_key") or QUEUE_INTERACTIVE))
    with org_context(parts.org):
        try:
            return shown(parts.close_runner.run(conversation_id, context, options))
        except RetryLater as later:
            raise _again(self, later) from None
        except Waiting as waiting:
            report_waiting(self, waiting.record)
            raise Ignore() from None  # acknowledged, and no task-succeeded: its close has not ended
        except SoftTimeLimitExceeded:
            _drop_redis_connections()
            try:  # bounded like any transient failure: it ends with an outcome
                return shown(parts.close_runner.after_time_limit(conversation_id, context))
            except RetryLater as later:
                raise _again(self, later) from None


def _again(task: Any, later: RetryLater) -> Retry:
    """The copy of this close that runs after ``later.countdown``. A retry after a failure counts one more
    (``Task.retry``); a wait (for its turn at the rate limit, or for another close of ours) sends the same message
    with this run's retry count, so waiting never uses up TASK_MAX_RETRIES nor shows in the record's attempts."""
    if later.failed:
        return task.retry(countdown=later.countdown)
    request = task.request
    copy = task.signature_from_request(request, countdown=later.countdown, retries=int(request.retries))
    try:
        copy.apply_async()
    except Exception as exc:  # as Task.retry does: the stalled-work recovery re-sends what the broker lost
        raise Reject(exc, requeue=False) from None
    return Retry(later.reason, when=later.countdown, sig=copy)


@task_revoked.connect  # type: ignore[untyped-decorator]
def record_expired_close(sender: Any = None, request: Any = None, expired: bool = False, **_: Any) -> None:
    """Celery discards a close whose ``expires`` time has passed (at receipt, or when its ETA or retry comes) and
    marks it REVOKED, which alone would leave no outcome: record ``not_attempted`` with the reason, listed by
    ``genesys-closer rejected`` and counted in its batch when it is an item. Runs in the consumer process."""
    if not expired or request is None or getattr(sender, "name", None) != TASK_NAME:
        return
    args, kwargs = list(getattr(request, "args", None) or []), dict(getattr(request, "kwargs", None) or {})
    expires = getattr(request, "expires", None)
    record_rejected(TASK_NAME, str(getattr(request, "id", "") or "")[:100], [args, kwargs, None],
                    f"expired before it ran (the message's expires was {str(expires)[:40]})", Outcome.NOT_ATTEMPTED,
                    app=app)


@app.task(bind=True, name=SWEEP_TASK_NAME, acks_late=False, **GUARDED)  # type: ignore[untyped-decorator]
def sweep(self: Any, filters: dict[str, Any] | None = None, dry_run: bool = False,
          options: dict[str, Any] | None = None, scheduled: bool = False, org: str | None = None) -> dict[str, Any]:
    """Find open web messaging conversations of ``org`` and (unless ``dry_run``) start a batch closing the chosen
    ones.

    Acknowledged on receipt: a sweep can outlive the broker's visibility timeout, and a lost sweep is simply
    run again (by the schedule or the operator), whereas a redelivered one would run twice at once.
    """
    try:
        parts = worker_parts(org)
    except UnknownOrg as exc:
        return {"error": str(exc), "error_code": "invalid_request"}
    with org_context(parts.org):
        return {**parts.sweeps.run(str(self.request.id), filters or {}, dry_run=dry_run, options=options or {},
                                   scheduled=scheduled), "org": parts.org}


@app.task(name=PROBE_TASK_NAME, acks_late=False, ignore_result=False, **GUARDED)  # type: ignore[untyped-decorator]
def health_probe() -> dict[str, Any]:
    """Answered by the worker that consumed it: proof that it still takes tasks from the broker."""
    return {"ok": True, "pid": os.getpid()}


@app.task(name=REDRIVE_TASK_NAME, acks_late=False, **GUARDED)  # type: ignore[untyped-decorator]
def redrive_stalled_batches() -> dict[str, object]:
    """Re-send what the broker lost: everything in flight after a Redis restart, stalled batches and standalone
    closes after BATCH_STALL_SECONDS (see ``worker.recovery.redrive``), for every org in turn (each under its own
    lock); the default org's report at the top, every org's under ``orgs``."""
    reports: dict[str, dict[str, object]] = {}
    for parts in every_org_parts():
        with org_context(parts.org):
            try:
                reports[parts.org] = parts.recovery.run().as_dict()
            except Exception as exc:  # one org's failed check never skips the others' (the next check tries again)
                log.exception("recovery check of org %s failed", parts.org)
                reports[parts.org] = {"error": f"{type(exc).__name__}: {str(exc)[:200]}"}
    first = next(iter(reports.values()), {})
    return {**first, "orgs": reports}


@app.task(name=CHECKS_TASK_NAME, acks_late=False, **GUARDED)  # type: ignore[untyped-decorator]
def pump_batched_checks(org: str | None = None) -> dict[str, object]:
    """Make the batched pre-check and confirmation reads of ``org`` that are due (see
    ``worker.checks.batched_checks``). Holds the org's lock (each org has its own pump); a lost pump is sent again
    by the next item or by the recovery check."""
    try:
        parts = worker_parts(org)
    except UnknownOrg as exc:
        return {"reads": 0, "error": str(exc)}
    try:
        with org_context(parts.org):
            return {"reads": parts.checks.run() if parts.checks is not None else 0}
    except SoftTimeLimitExceeded:
        _drop_redis_connections()
        return {"reads": 0, "stopped": "soft time limit"}


@app.task(name=FEED_TASK_NAME, acks_late=False, **GUARDED)  # type: ignore[untyped-decorator]
def feed_batches(org: str | None = None) -> dict[str, object]:
    """Advance every fed batch of ``org`` (see ``shared.feeder``): refill, and record an ended batch's items never
    fed. Holds the org's feed lock; sent by a cancel, by an item of an ended batch, and run by the recovery check
    too."""
    try:
        parts = worker_parts(org)
    except UnknownOrg as exc:
        return {"batches": {}, "error": str(exc)}
    try:
        with org_context(parts.org):
            return {"batches": parts.feeder.advance_all(parts.feed_budget_seconds)}
    except SoftTimeLimitExceeded:
        _drop_redis_connections()
        return {"batches": {}, "stopped": "soft time limit"}


@app.task(name=READINESS_TASK_NAME, acks_late=False, ignore_result=False, **GUARDED)  # type: ignore[untyped-decorator]
def readiness(org: str | None = None) -> dict[str, Any]:
    """``genesys-closer check`` of ``org``, run by a worker with that org's settings, for the console's Readiness
    page (the intake holds no Genesys credentials). Read-only; the rows carry Genesys' text and fixes, never a token
    or secret."""
    name = org or DEFAULT_ORG
    orgs = get_org_settings()
    if name not in orgs:
        return {"ready": False, "checks": [], "org": str(name)[:40], "error": "this deployment does not serve that org"}
    checks = run_checks(orgs[name], name)
    return {"ready": ready(checks), "org": name,
            "checks": [{"check": c.name, "ok": c.ok, "detail": c.detail, "fix": c.fix} for c in checks]}


def _drop_redis_connections() -> None:
    """The soft time limit's exception can land between a Redis command and its reply: a connection left with an
    unread reply would answer the next command with it. Every pooled connection is closed (they reconnect)."""
    from genesys_closer.worker.factory import process_redis

    process_redis().connection_pool.disconnect()
