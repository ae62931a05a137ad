"""Sweeps: each one's summary and its candidates (JSON lines), kept for the retention period."""

from __future__ import annotations

import json
from collections.abc import Iterator
from typing import Any

import redis

from genesys_closer.config.redis_keys import KEYS, RedisKeys


class SweepStore:
    def __init__(self, client: redis.Redis, retention_seconds: int, *, keys: RedisKeys = KEYS) -> None:
        self.redis = client
        self.retention = retention_seconds
        self.keys = keys

    def save(self, sweep_id: str, summary: dict[str, Any], candidates: list[str]) -> None:
        key = self.keys.sweep_candidates(sweep_id)
        pipe = self.redis.pipeline(transaction=False)
        for chunk_start in range(0, len(candidates), 500):
            pipe.rpush(key, *candidates[chunk_start:chunk_start + 500])
        pipe.expire(key, self.retention)
        pipe.set(self.keys.sweep(sweep_id), json.dumps(summary), ex=self.retention)
        pipe.execute()

    def summary(self, sweep_id: str) -> dict[str, Any] | None:
        raw = self.redis.get(self.keys.sweep(sweep_id))
        return None if raw is None else dict(json.loads(raw))

    def candidates(self, sweep_id: str, chunk: int = 500) -> Iterator[dict[str, Any]]:
        start = 0
        while True:
            rows = self.redis.lrange(self.keys.sweep_candidates(sweep_id), start, start + chunk - 1)
            if not rows:
                return
            start += len(rows)
            for raw in rows:
                yield dict(json.loads(raw))
