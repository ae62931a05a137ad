"""Celery tasks. Thin: the work is in ``worker.runtime`` and ``worker.closer``.

Arguments are IDs and plain options only (Flower shows them); results are outcome records (no token, no secret).
"""

from __future__ import annotations

from typing import Any

from celery.exceptions import SoftTimeLimitExceeded

from worker.app import TASK_NAME, app
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
