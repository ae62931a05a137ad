"""The worker's consumer and beat reconnect to Redis within BROKER_RECONNECT_MAX_SECONDS of its return.

Celery's consumer retries a lost broker with kombu's default schedule: waits of 2, 4, 6, ... seconds, growing to 30
(``Connection.ensure_connection``'s ``interval_start``/``interval_step``/``interval_max``), and Celery has no
setting for them. After a 60 s outage the next try came up to 16 s after Redis was back, after a longer one up to
30 s, and all that time the worker's closes waited. Here the waits start at 1 s and grow by 1 s to at most
BROKER_RECONNECT_MAX_SECONDS (5): one connection attempt per worker every 5 s while Redis is away costs Redis
nothing, and the worker consumes again at most that long after Redis returns. Installed with Celery's own
extension point for the consumer class (``worker_consumer``, set by ``worker.app``).

Beat's scheduler reconnects with the same default schedule (its "beat: Connection error ... Trying again in N
seconds" loop): after a 60 s outage beat sent its next recovery check 14 s after Redis was back (2026-12-01, the
flap test), so what the broker lost waited that long to be re-sent. ``PromptReconnectScheduler`` is Celery's
``PersistentScheduler`` (same ``--schedule`` file) with this schedule, installed through ``beat_scheduler``.
"""

from __future__ import annotations

import functools
import logging
from typing import Any

from celery.beat import PersistentScheduler

from genesys_closer.config.settings import get_worker_settings
from genesys_closer.worker.broker.event_batches import EventBatches

FIRST_WAIT_SECONDS = 1.0
log = logging.getLogger("celery.beat")


def reconnect_schedule() -> dict[str, float]:
    """kombu's ``ensure_connection`` intervals: 1 s, then 1 s longer each time, to BROKER_RECONNECT_MAX_SECONDS."""
    cap = float(get_worker_settings().broker_reconnect_max_seconds)
    first = min(FIRST_WAIT_SECONDS, cap)
    return {"interval_start": first, "interval_step": first, "interval_max": cap}


class PromptReconnectConsumer(EventBatches):
    """Celery's consumer with a reconnection schedule capped at BROKER_RECONNECT_MAX_SECONDS (and its task events
    sent in groups: ``worker.broker.event_batches``)."""

    def ensure_connected(self, conn: Any) -> Any:
        conn.ensure_connection = functools.partial(conn.ensure_connection, **reconnect_schedule())
        return super().ensure_connected(conn)


class PromptReconnectScheduler(PersistentScheduler):  # type: ignore[misc]
    """Celery beat's persistent scheduler with a reconnection schedule capped at BROKER_RECONNECT_MAX_SECONDS
    (Celery's ``Scheduler._ensure_connected`` with these intervals instead of kombu's defaults)."""

    def _ensure_connected(self) -> Any:
        def said(exc: Exception, interval: float) -> None:
            log.error("beat: Connection error: %s. Trying again in %s seconds...", exc, interval)

        return self.connection.ensure_connection(said, self.app.conf.broker_connection_max_retries,
                                                 **reconnect_schedule())
