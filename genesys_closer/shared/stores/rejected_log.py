"""Messages refused before they ran (bounds, options): a capped list, newest first."""

from __future__ import annotations

import json
from typing import Any

import redis

from genesys_closer.config.redis_keys import KEYS, RedisKeys
from genesys_closer.shared.outcomes import CloseResult
from genesys_closer.shared.stores.outcome_store import OutcomeStore


class RejectedLog:
    def __init__(self, client: redis.Redis, outcomes: OutcomeStore, retention_seconds: int, *,
                 keys: RedisKeys = KEYS, keep: int = 1000) -> None:
        self.redis = client
        self.outcomes = outcomes
        self.retention = retention_seconds
        self.keys = keys
        self.keep = keep

    def add(self, result: CloseResult, task_id: str) -> None:
        """Keep a refused message (and count it in its batch when it is an item of one)."""
        entry = json.dumps({"task_id": task_id, **result.as_dict()}, separators=(",", ":"))
        pipe = self.redis.pipeline(transaction=False)
        pipe.lpush(self.keys.rejected, entry)
        pipe.ltrim(self.keys.rejected, 0, self.keep - 1)
        pipe.expire(self.keys.rejected, self.retention)
        pipe.execute()
        if result.batch_id:
            self.outcomes.record(result)

    def recent(self, limit: int = 100) -> list[dict[str, Any]]:
        return [dict(json.loads(raw)) for raw in self.redis.lrange(self.keys.rejected, 0, limit - 1)]
