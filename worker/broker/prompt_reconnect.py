"""The worker's consumer reconnects to Redis within BROKER_RECONNECT_MAX_SECONDS of its return.

Celery's consumer retries a lost broker with kombu's default schedule: waits of 2, 4, 6, ... seconds, growing to 30
(``Connection.ensure_connection``'s ``interval_start``/``interval_step``/``interval_max``), and Celery has no
setting for them. After a 60 s outage the next try came up to 16 s after Redis was back, after a longer one up to
30 s, and all that time the worker's closes waited. Here the waits start at 1 s and grow by 1 s to at most
BROKER_RECONNECT_MAX_SECONDS (5): one connection attempt per worker every 5 s while Redis is away costs Redis
nothing, and the worker consumes again at most that long after Redis returns. Installed with Celery's own
extension point for the consumer class (``worker_consumer``, set by ``worker.app``).
"""

from __future__ import annotations

import functools
from typing import Any

from celery.worker.consumer import Consumer

from genesys_closer.config.settings import get_worker_settings

FIRST_WAIT_SECONDS = 1.0


class PromptReconnectConsumer(Consumer):  # type: ignore[misc]
    """Celery's consumer with a reconnection schedule capped at BROKER_RECONNECT_MAX_SECONDS."""

    def ensure_connected(self, conn: Any) -> Any:
        cap = float(get_worker_settings().broker_reconnect_max_seconds)
        first = min(FIRST_WAIT_SECONDS, cap)
        conn.ensure_connection = functools.partial(conn.ensure_connection, interval_start=first,
                                                   interval_step=first, interval_max=cap)
        return super().ensure_connected(conn)
