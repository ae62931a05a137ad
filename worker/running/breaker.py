"""A fleet-wide circuit breaker: repeated 401/403 stop the work instead of making thousands of failing calls."""

from __future__ import annotations

import redis

from genesys_closer.config.redis_keys import KEYS, RedisKeys
from genesys_closer.shared.redis_connection import text_or_none


class CircuitBreaker:
    """Counts consecutive authorization failures of one OAuth client across the fleet.

    After ``threshold`` of them in a row the breaker opens for ``open_seconds``: closes are not attempted and
    end with the reason, which names the missing permission. One success resets the count; after the open
    period one attempt is let through again (and a single further failure re-opens it).
    """

    def __init__(self, client: redis.Redis, bucket: str, threshold: int = 5, open_seconds: float = 300.0,
                 keys: RedisKeys = KEYS) -> None:
        self.redis = client
        self.threshold = threshold
        self.open_seconds = open_seconds
        self.count_key = keys.breaker(bucket, "failures")
        self.open_key = keys.breaker(bucket, "open")

    def open_reason(self) -> str | None:
        # A wrong-shaped reply (an out-of-step connection) raises: it never opens the breaker nor stops a batch.
        return text_or_none(self.redis, self.redis.get(self.open_key), "GET of the breaker")

    def record_failure(self, reason: str) -> bool:
        """Count one failure; True when this opened the breaker."""
        pipe = self.redis.pipeline(transaction=True)
        pipe.incr(self.count_key)
        pipe.expire(self.count_key, max(60, round(self.open_seconds * 2)))
        failures = int(pipe.execute()[0])
        if failures >= self.threshold:
            message = f"circuit breaker open after {failures} consecutive authorization failures: {reason}"
            open_ms = max(1, round(self.open_seconds * 1000))
            return bool(self.redis.set(self.open_key, message[:1000], px=open_ms, nx=True))
        return False

    def record_success(self) -> None:
        self.redis.delete(self.count_key)

    def reset(self) -> None:
        self.redis.delete(self.count_key, self.open_key)
