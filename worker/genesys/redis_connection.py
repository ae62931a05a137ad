"""The Redis connection genesys-closer uses everywhere, and its Lua scripts (files under ``worker/lua``)."""

from __future__ import annotations

from importlib import resources

import redis
from redis.backoff import ExponentialBackoff
from redis.commands.core import Script
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


def lua_source(*names: str) -> str:
    """The text of one or more Lua files, joined in order (a shared file of functions goes first)."""
    package = resources.files("genesys_closer.worker").joinpath("lua")
    return "\n".join(package.joinpath(name).read_text(encoding="utf-8") for name in names)


def register_lua(client: redis.Redis, *names: str) -> Script:
    """Register the script made of ``names`` (see ``lua_source``) on ``client``."""
    return client.register_script(lua_source(*names))
