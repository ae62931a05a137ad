"""Who is enqueuing a batch: a lease in Redis, held while the batch's items are stored and published.

A batch is created in state ``enqueuing`` and listed in ``KEYS.enqueuing`` until it is marked enqueued. Whoever
builds it (``close_many``, the HTTP intake's background publisher, a worker's sweep, the recovery resuming it)
holds the batch's lease and extends it while it works. A holder that dies (SIGKILL, an intake restart, a lost host)
stops extending it; once the lease has expired, the recovery check takes the batch over (``Recovery``):

- a batch whose items were all stored (``staged_at`` set: its caller may have its id) gets every item without an
  outcome that the broker does not hold published, and is marked enqueued;
- a batch still being stored when its builder died (its caller never got an id) is discarded, as a batch whose
  input fails while being read is.

A holder that finds its lease taken over (it stalled for longer than the lease) stops publishing: the new holder
publishes what the broker does not hold, so no item is lost and copies that race are harmless (in-flight lock).
"""

from __future__ import annotations

import time
import uuid
from collections.abc import Callable

import redis

from genesys_closer.config.redis_keys import KEYS, RedisKeys
from genesys_closer.shared.locks import OwnedLock

LEASE_SECONDS = 30.0  # a dead builder's batch is taken over this long after its last extension


class EnqueueLease:
    """The lease on one batch's enqueue; ``keep`` extends it at most every third of its time-to-live."""

    def __init__(self, client: redis.Redis, batch_id: str, ttl_seconds: float = LEASE_SECONDS, *,
                 clock: Callable[[], float] = time.monotonic, keys: RedisKeys = KEYS) -> None:
        self.batch_id = batch_id
        self.ttl_seconds = ttl_seconds
        self._lock = OwnedLock(client, keys.batch_enqueuer(batch_id), ttl_seconds)
        self._owner = uuid.uuid4().hex
        self._clock = clock
        self._extended_at = 0.0

    def take(self) -> bool:
        """Take the lease unless someone holds it."""
        taken = self._lock.acquire(self._owner)
        self._extended_at = self._clock()
        return taken

    def keep(self) -> bool:
        """Extend the lease when a third of its time-to-live has passed; False when it expired or changed hands
        (then stop working on the batch: someone else took it over)."""
        now = self._clock()
        if now - self._extended_at < self.ttl_seconds / 3:
            return True
        self._extended_at = now
        return self._lock.extend()

    def release(self) -> None:
        self._lock.release()

    def held_by_anyone(self) -> bool:
        return self._lock.owner() is not None

