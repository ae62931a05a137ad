"""What genesys-closer keeps in Redis, one store per kind of record (key names in ``config.redis_keys``):

- ``OutcomeStore`` (outcome_store): the latest outcome per conversation; a batch item's record, counted once.
- ``RejectedLog`` (rejected_log): messages refused before they ran.
- ``BatchStore`` (batch_store): batches, their items and members; state changes guarded in Lua
  (``batch_state``: named states and the pure ``next_state``).
- ``PendingCloses`` (pending_closes): standalone closes not yet recorded (what a redrive re-sends).
- ``SweepStore`` (sweep_store): sweep summaries and candidates.

They outlive Flower and the Celery result backend; every key expires after the retention period
(``RESULTS_TTL_SECONDS``, 7 days by default). ``ResultStores`` opens all five on one client.
"""

from __future__ import annotations

import time
from collections.abc import Callable
from dataclasses import dataclass

import redis

from genesys_closer.config.redis_keys import KEYS, RedisKeys
from genesys_closer.shared.stores.batch_store import BatchStore
from genesys_closer.shared.stores.outcome_store import OutcomeStore
from genesys_closer.shared.stores.pending_closes import PendingCloses
from genesys_closer.shared.stores.rejected_log import RejectedLog
from genesys_closer.shared.stores.sweep_store import SweepStore

DEFAULT_RETENTION_SECONDS = 7 * 24 * 3600


@dataclass(frozen=True)
class ResultStores:
    """The five stores on one Redis client (what a worker process or a producer client holds)."""

    outcomes: OutcomeStore
    rejected: RejectedLog
    batches: BatchStore
    pending: PendingCloses
    sweeps: SweepStore
    clock: Callable[[], float]

    @classmethod
    def open(cls, client: redis.Redis, retention_seconds: int = DEFAULT_RETENTION_SECONDS, *,
             keys: RedisKeys = KEYS, clock: Callable[[], float] = time.time) -> ResultStores:
        outcomes = OutcomeStore(client, retention_seconds, keys=keys, clock=clock)
        return cls(outcomes=outcomes,
                   rejected=RejectedLog(client, outcomes, retention_seconds, keys=keys),
                   batches=BatchStore(client, retention_seconds, keys=keys, clock=clock),
                   pending=PendingCloses(client, keys=keys, clock=clock),
                   sweeps=SweepStore(client, retention_seconds, keys=keys),
                   clock=clock)
