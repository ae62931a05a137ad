"""Standalone closes (not in a batch) enqueued or running, by task id: what a redrive can re-send."""

from __future__ import annotations

import json
import time
from collections.abc import Callable, Iterator
from typing import Any

import redis

from genesys_closer.config.redis_keys import KEYS, RedisKeys
from genesys_closer.shared.redis_connection import text


class PendingCloses:
    def __init__(self, client: redis.Redis, *, keys: RedisKeys = KEYS, clock: Callable[[], float] = time.time) -> None:
        self.redis = client
        self.keys = keys
        self.clock = clock

    def track(self, task_id: str, conversation_id: str, options: dict[str, Any], queue: str, *,
              only_if_absent: bool = False) -> None:
        """Remember a standalone close until its outcome is recorded (so a lost message can be re-sent). Workers
        pass ``only_if_absent`` (a close a producer already tracked keeps its entry)."""
        entry = json.dumps({"conversation_id": conversation_id, "options": options, "queue": queue,
                            "at": self.clock()}, separators=(",", ":"))
        if only_if_absent:
            self.redis.hsetnx(self.keys.pending, task_id, entry)
        else:
            self.redis.hset(self.keys.pending, task_id, entry)

    def forget(self, task_id: str) -> None:
        self.redis.hdel(self.keys.pending, task_id)

    def entries(self) -> Iterator[tuple[str, dict[str, Any]]]:
        """(task id, entry) of every standalone close not yet recorded."""
        for task_id, raw in self.redis.hscan_iter(self.keys.pending, count=500):
            try:
                entry = json.loads(raw)
            except ValueError:
                continue
            if isinstance(entry, dict):
                yield text(task_id), entry
