"""Re-driving stalled batches: the items without an outcome of batches that made no progress for a while.

The broker already returns a lost worker's messages after the visibility timeout; this covers what it cannot
(messages lost with a Redis failover or restart). Safe to repeat: closes are idempotent and counted once.
"""

from __future__ import annotations

import json
import logging
import uuid

import redis

from genesys_closer.config.redis_keys import KEYS
from genesys_closer.worker.batches import BatchWriter
from genesys_closer.worker.genesys.locks import OwnedLock
from genesys_closer.worker.names import QUEUE_BULK
from genesys_closer.worker.results import ResultStore

log = logging.getLogger("genesys_closer.worker")
LOCK_SECONDS = 60


class BatchRecovery:
    def __init__(self, client: redis.Redis, results: ResultStore, batches: BatchWriter, stall_seconds: float) -> None:
        self.redis = client
        self.results = results
        self.batches = batches
        self.stall_seconds = stall_seconds

    def redrive_stalled(self) -> dict[str, int]:
        """Re-queue the missing items of every stalled batch; {batch id: items re-queued}. One run at a time in
        the fleet (a run that finds the lock taken does nothing)."""
        lock = OwnedLock(self.redis, KEYS.redrive_lock, LOCK_SECONDS)
        if not lock.acquire(uuid.uuid4().hex):
            return {}
        redriven: dict[str, int] = {}
        with lock:
            for batch_id in self.results.stalled_batches(self.stall_seconds):
                options, queue = self.results.batch_fields(batch_id, "options", "queue")
                missing = list(self.results.missing_items(batch_id))
                count = self.batches.publish(batch_id, missing, json.loads(options or "{}"), queue or QUEUE_BULK)
                self.results.mark_redriven(batch_id, count)
                redriven[batch_id] = count
                log.warning("batch stalled for %d s: re-queued %d item(s) without an outcome",
                            self.stall_seconds, count, extra={"batch_id": batch_id})
        return redriven
