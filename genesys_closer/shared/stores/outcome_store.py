"""Close outcomes: the latest record per conversation, and each batch item's record (counted in its batch once)."""

from __future__ import annotations

import json
import time
from collections.abc import Callable
from typing import Any

import redis

from genesys_closer.config.redis_keys import KEYS, RedisKeys
from genesys_closer.shared.outcomes import CloseResult, Outcome
from genesys_closer.shared.redis_connection import text
from genesys_closer.shared.stores.batch_scripts import register_batch_script


class OutcomeStore:
    def __init__(self, client: redis.Redis, retention_seconds: int, *, keys: RedisKeys = KEYS,
                 clock: Callable[[], float] = time.time) -> None:
        self.redis = client
        self.retention = retention_seconds
        self.keys = keys
        self.clock = clock
        self._record = register_batch_script(client, "record_outcome.lua")

    def record(self, result: CloseResult, item_key: str | None = None) -> bool:
        """Store ``result``; count it in its batch exactly once. True when it was counted now.

        A batch item's record is kept once, in its batch; the conversation's latest-outcome key then holds only a
        reference to it (``{"batch_id": ...}``), which keeps a batched close under 1 kB of Redis memory."""
        keys, args = self._record_call(result, item_key)
        return bool(self._record(keys=keys, args=args))

    def record_many(self, results: list[CloseResult]) -> int:
        """``record`` for several outcomes in one round trip; returns how many were counted now."""
        pipe = self.redis.pipeline(transaction=False)
        for result in results:
            keys, args = self._record_call(result, None)
            self._record(keys=keys, args=args, client=pipe)
        return sum(1 for counted in pipe.execute() if counted)

    def _record_call(self, result: CloseResult, item_key: str | None) -> tuple[list[str], list[Any]]:
        payload = json.dumps(result.stored(in_batch=bool(result.batch_id)), separators=(",", ":"))
        key = item_key or result.conversation_id
        if result.batch_id:
            keys = [self.keys.outcome(result.conversation_id), self.keys.batch_items(result.batch_id),
                    self.keys.batch(result.batch_id)]
            latest = result.batch_id  # a reference: the record is in that batch, under the conversation id
        else:
            keys = [self.keys.outcome(result.conversation_id), "", ""]
            latest = payload
        by_conversation = "0" if result.outcome is Outcome.INVALID_ID else "1"
        return keys, [key, payload, result.outcome.value, self.retention, repr(self.clock()), by_conversation, latest]

    def latest(self, conversation_id: str) -> CloseResult | None:
        """The latest outcome recorded for a conversation (following a batch item's reference)."""
        raw = self.redis.get(self.keys.outcome(conversation_id))
        if raw is None:
            return None
        raw = text(raw)
        if raw.startswith("{"):
            return CloseResult.from_dict({**json.loads(raw), "org": self.keys.org})
        batch_id = raw
        item = self.redis.hget(self.keys.batch_items(batch_id), conversation_id)
        if item is None:
            return None
        return CloseResult.from_dict({**json.loads(item), "batch_id": batch_id, "org": self.keys.org})
