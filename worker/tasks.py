"""Celery tasks. Thin: the work is in ``close_run``, ``recovery`` and ``sweep_run``.

Arguments are IDs and plain options only (Flower shows them); results are outcome records (no token, no secret).
Time limits come from the app's configuration (the sweep's from ``task_annotations``), never from settings read
here.
"""

from __future__ import annotations

import os
from typing import Any

from celery.exceptions import SoftTimeLimitExceeded
from celery.signals import task_revoked

from genesys_closer.config.settings import get_worker_settings
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
from genesys_closer.worker.factory import record_rejected, worker_parts
from genesys_closer.worker.ops.readiness import ready, run_checks
from genesys_closer.worker.running.close_run import RetryLater, TaskContext

GUARDED: dict[str, Any] = {
    "Strategy": "genesys_closer.worker.broker.message_bounds:bounded_strategy",  # every message is bounded first
}


@app.task(bind=True, name=TASK_NAME, max_retries=None, **GUARDED)  # type: ignore[untyped-decorator]
def close_conversation(self: Any, conversation_id: str, batch_id: str | None = None, **options: Any) -> dict[str, Any]:
    """Close one Genesys Cloud web messaging conversation; returns its outcome record."""
    delivery = self.request.delivery_info or {}
    context = TaskContext(task_id=str(self.request.id), retries=int(self.request.retries),
                          batch_id=batch_id if isinstance(batch_id, str) or batch_id is None else repr(batch_id)[:80],
                          queue=str(delivery.get("routing_key") or QUEUE_INTERACTIVE))
    try:
        return worker_parts().close_runner.run(conversation_id, context, options)
    except RetryLater as later:
        raise self.retry(countdown=later.countdown) from None
    except SoftTimeLimitExceeded:
        _drop_redis_connections()
        try:  # bounded like any transient failure: it ends with an outcome
            return worker_parts().close_runner.after_time_limit(conversation_id, context)
        except RetryLater as later:
            raise self.retry(countdown=later.countdown) from None


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
          options: dict[str, Any] | None = None, scheduled: bool = False) -> dict[str, Any]:
    """Find open web messaging conversations and (unless ``dry_run``) start a batch closing the chosen ones.

    Acknowledged on receipt: a sweep can outlive the broker's visibility timeout, and a lost sweep is simply
    run again (by the schedule or the operator), whereas a redelivered one would run twice at once.
    """
    return worker_parts().sweeps.run(str(self.request.id), filters or {}, dry_run=dry_run, options=options or {},
                                     scheduled=scheduled)


@app.task(name=PROBE_TASK_NAME, acks_late=False, ignore_result=False, **GUARDED)  # type: ignore[untyped-decorator]
def health_probe() -> dict[str, Any]:
    """Answered by the worker that consumed it: proof that it still takes tasks from the broker."""
    return {"ok": True, "pid": os.getpid()}


@app.task(name=REDRIVE_TASK_NAME, acks_late=False, **GUARDED)  # type: ignore[untyped-decorator]
def redrive_stalled_batches() -> dict[str, object]:
    """Re-send what the broker lost: everything in flight after a Redis restart, stalled batches and standalone
    closes after BATCH_STALL_SECONDS (see ``worker.recovery.redrive``)."""
    return worker_parts().recovery.run().as_dict()


@app.task(name=CHECKS_TASK_NAME, acks_late=False, **GUARDED)  # type: ignore[untyped-decorator]
def pump_batched_checks() -> dict[str, object]:
    """Make the batched pre-check and confirmation reads that are due (see ``worker.checks.batched_checks``). Holds a
    fleet-wide lock; a lost pump is sent again by the next item or by the recovery check."""
    pump = worker_parts().checks
    try:
        return {"reads": pump.run() if pump is not None else 0}
    except SoftTimeLimitExceeded:
        _drop_redis_connections()
        return {"reads": 0, "stopped": "soft time limit"}


@app.task(name=FEED_TASK_NAME, acks_late=False, **GUARDED)  # type: ignore[untyped-decorator]
def feed_batches() -> dict[str, object]:
    """Advance every fed batch (see ``shared.feeder``): refill, and record an ended batch's items never fed. Holds a
    fleet-wide lock; sent by a cancel, by an item of an ended batch, and run by the recovery check too."""
    try:
        parts = worker_parts()
        return {"batches": parts.feeder.advance_all(parts.feed_budget_seconds)}
    except SoftTimeLimitExceeded:
        _drop_redis_connections()
        return {"batches": {}, "stopped": "soft time limit"}


@app.task(name=READINESS_TASK_NAME, acks_late=False, ignore_result=False, **GUARDED)  # type: ignore[untyped-decorator]
def readiness() -> dict[str, Any]:
    """``genesys-closer check`` run by a worker, with its own settings, for the console's Readiness page (the intake
    holds no Genesys credentials). Read-only; the rows carry Genesys' text and fixes, never a token or secret."""
    checks = run_checks(get_worker_settings())
    return {"ready": ready(checks),
            "checks": [{"check": c.name, "ok": c.ok, "detail": c.detail, "fix": c.fix} for c in checks]}


def _drop_redis_connections() -> None:
    """The soft time limit's exception can land between a Redis command and its reply: a connection left with an
    unread reply would answer the next command with it. Every pooled connection is closed (they reconnect)."""
    worker_parts().close_runner.redis.connection_pool.disconnect()
