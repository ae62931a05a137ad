"""A worker request whose acknowledgement survives a lost broker connection.

With kombu 5.7 on Redis, an acknowledgement that races a lost connection (Redis restarting) can raise
AttributeError from inside kombu (the channel's connection is already gone). Celery treats that as an unrecoverable
error and stops the worker for good (seen in tests/e2e/test_chaos.py::test_redis_restart_mid_batch). Such an ack is
simply a lost ack, like any connection error: it is logged and the message is delivered again later, which is
harmless here (closes are idempotent and each item is counted once).
"""

from __future__ import annotations

import logging

from celery.worker.request import Request

log = logging.getLogger("genesys_closer.worker")


class SafeAckRequest(Request):  # type: ignore[misc]
    acknowledged: bool

    def acknowledge(self) -> None:
        if not self.acknowledged:
            self._on_ack(log, (*self._connection_errors, AttributeError))
            self.acknowledged = True

    def reject(self, requeue: bool = False) -> None:
        if not self.acknowledged:
            self._on_reject(log, (*self._connection_errors, AttributeError), requeue)
            self.acknowledged = True
            self.send_event("task-rejected", requeue=requeue)
