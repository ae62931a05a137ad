"""Celery tasks. Thin: the work is in ``worker.runtime`` and ``worker.closer``.

Arguments are IDs and plain options only (Flower shows them); results are outcome records (no token, no secret).
"""

from __future__ import annotations

import os
from typing import Any

from celery.exceptions import SoftTimeLimitExceeded

from config.settings import get_settings
from worker.app import PROBE_TASK_NAME, REDRIVE_TASK_NAME, SWEEP_TASK_NAME, TASK_NAME, app
from worker.runtime import RetryLater, TaskContext, get_runtime


@app.task(bind=True, name=TASK_NAME, max_retries=None)  # type: ignore[untyped-decorator]
def close_conversation(self: Any, conversation_id: str, batch_id: str | None = None, **options: Any) -> dict[str, Any]:
    """Close one Genesys Cloud web messaging conversation; returns its outcome record."""
    context = TaskContext(task_id=str(self.request.id), retries=int(self.request.retries), batch_id=batch_id)
    try:
        return get_runtime().close(conversation_id, context, options)
    except RetryLater as later:
        raise self.retry(countdown=later.countdown) from None
    except SoftTimeLimitExceeded:
        raise self.retry(countdown=5) from None


@app.task(bind=True, name=SWEEP_TASK_NAME, acks_late=False, soft_time_limit=get_settings().sweep_time_limit_seconds,
          time_limit=get_settings().sweep_time_limit_seconds + 60)  # type: ignore[untyped-decorator]
def sweep(self: Any, filters: dict[str, Any] | None = None, dry_run: bool = False,
          options: dict[str, Any] | None = None, scheduled: bool = False) -> dict[str, Any]:
    """Find open web messaging conversations and (unless ``dry_run``) start a batch closing the chosen ones.

    Acknowledged on receipt: a sweep can outlive the broker's visibility timeout, and a lost sweep is simply
    run again (by the schedule or the operator), whereas a redelivered one would run twice at once.
    """
    return get_runtime().sweep(str(self.request.id), filters or {}, dry_run=dry_run, options=options or {},
                               scheduled=scheduled)


@app.task(name=PROBE_TASK_NAME, acks_late=False, ignore_result=False)  # type: ignore[untyped-decorator]
def health_probe() -> dict[str, Any]:
    """Answered by the worker that consumed it: proof that it still takes tasks from the broker."""
    return {"ok": True, "pid": os.getpid()}


@app.task(name=REDRIVE_TASK_NAME, acks_late=False)  # type: ignore[untyped-decorator]
def redrive_stalled_batches() -> dict[str, int]:
    """Re-queue the items without an outcome of batches that made no progress for BATCH_STALL_SECONDS.

    The broker already returns a lost worker's messages after the visibility timeout; this covers what it cannot
    (messages lost with a Redis failover or restart). Safe to repeat: closes are idempotent and counted once.
    """
    return get_runtime().redrive_stalled_batches()
