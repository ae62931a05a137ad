"""The Redis connection used for the shared token, the rate limiter, outcomes and batches."""

from __future__ import annotations

import redis
from redis.backoff import ExponentialBackoff
from redis.retry import Retry


def connect(url: str) -> redis.Redis:
    """A client that reconnects on its own (keepalive, health checks, retried connection errors)."""
    return redis.Redis.from_url(
        url,
        decode_responses=True,
        socket_keepalive=True,
        socket_connect_timeout=10,
        socket_timeout=30,
        health_check_interval=10,
        retry=Retry(ExponentialBackoff(cap=2.0, base=0.05), retries=5),
        retry_on_error=[redis.ConnectionError, redis.TimeoutError],
    )


def text(value: object) -> str:
    """Redis replies as text, whatever the client's decode setting."""
    return value.decode() if isinstance(value, bytes) else str(value)
