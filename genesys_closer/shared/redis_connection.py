"""The Redis connection genesys-closer uses everywhere, and its Lua scripts (files under ``genesys_closer/shared/lua``).

``connect`` is the one factory of Redis clients for the product's own state (token, limiter, outcomes, batches,
locks, the recovery's view of the broker): a plain URL, or the master that Redis Sentinel names, with the same
keepalive and retry settings either way. The Celery side (broker, result backend) is configured from the same
``RedisTarget`` in ``shared.celery_config``.
"""

from __future__ import annotations

from importlib import resources
from typing import Any

import redis
from redis.backoff import ExponentialBackoff
from redis.commands.core import Script
from redis.retry import Retry
from redis.sentinel import Sentinel, SentinelManagedConnection
from redis.utils import SENTINEL

from genesys_closer.config.errors import CloserError
from genesys_closer.config.redis_keys import KEYS
from genesys_closer.config.redis_target import RedisTarget

SOCKET_CONNECT_TIMEOUT_SECONDS = 10
SOCKET_TIMEOUT_SECONDS = 30
CALLER_SOCKET_TIMEOUT_SECONDS = 5
PROBE_TIMEOUT_SECONDS = 2
HEALTH_CHECK_INTERVAL_SECONDS = 10
REPLICA_WAIT_MS = 1000
# A refused (or, for a worker, timed-out) command is retried RETRIES times after waits of RETRY_BASE_SECONDS doubled
# each time, at most RETRY_CAP_SECONDS: 0.1 + 0.2 + 0.4 + 0.8 + 1.6 = 3.1 s before a caller hears Redis is not there.
RETRIES = 5
RETRY_BASE_SECONDS = 0.05
RETRY_CAP_SECONDS = 2.0


class NotReplicatedError(CloserError, redis.ConnectionError):
    """The master took the writes but fewer replicas than REDIS_WAIT_REPLICAS acknowledged them in time: a failover
    now could lose them. The work may still run; sending it again is harmless (a close is idempotent)."""


class ReplyOutOfStep(CloserError, redis.ConnectionError):
    """A reply that cannot be the answer to the command sent (a list for a GET): the connection answered another
    command. Raised after every connection of the client was dropped, so the next command is in step again; a
    connection error, so the work is retried like any other Redis failure."""


def text_or_none(client: redis.Redis, reply: object, command: str) -> str | None:
    """The reply of a command answered by a string or nil (GET, HGET), as text. Anything else means the connection is
    out of step with its commands: every connection of ``client`` is dropped and ReplyOutOfStep raised."""
    if reply is None:
        return None
    if isinstance(reply, str | bytes):
        return text(reply)
    client.connection_pool.disconnect()
    raise ReplyOutOfStep(f"{command} was answered with a {type(reply).__name__}, the reply of another command; "
                         "the client's Redis connections were dropped")


def _client_options(*, caller: bool = False, probe: bool = False) -> dict[str, Any]:
    """Workers retry refused and timed-out commands (a Redis restart, a slow fsync). A caller that someone waits for
    (the producer API, the CLI, the intake) retries refused connections only and gives up on a silent server after
    ``CALLER_SOCKET_TIMEOUT_SECONDS``: a hung Redis (a host that stopped answering) is then reported within seconds,
    not after six 30-second timeouts. A probe (``check``'s information rows) tries once, within
    ``PROBE_TIMEOUT_SECONDS``: it reports what it finds, and a Redis that is not there is an answer too."""
    if probe:
        return {"decode_responses": True, "socket_connect_timeout": PROBE_TIMEOUT_SECONDS,
                "socket_timeout": PROBE_TIMEOUT_SECONDS, "retry": Retry(ExponentialBackoff(), retries=0)}
    retried: tuple[type[Exception], ...] = (
        (redis.ConnectionError,) if caller else (redis.ConnectionError, redis.TimeoutError))
    return {
        "decode_responses": True,
        "socket_keepalive": True,
        "socket_connect_timeout": SOCKET_CONNECT_TIMEOUT_SECONDS,
        "socket_timeout": CALLER_SOCKET_TIMEOUT_SECONDS if caller else SOCKET_TIMEOUT_SECONDS,
        "health_check_interval": HEALTH_CHECK_INTERVAL_SECONDS,
        "retry": Retry(ExponentialBackoff(cap=RETRY_CAP_SECONDS, base=RETRY_BASE_SECONDS), retries=RETRIES,
                       supported_errors=retried),
        "retry_on_error": list(retried),
    }


def sentinel_options(target: RedisTarget) -> dict[str, Any]:
    """How to talk to the sentinels themselves: their password, short timeouts (a dead sentinel is skipped)."""
    options: dict[str, Any] = {"socket_connect_timeout": 2, "socket_timeout": 2, "socket_keepalive": True}
    secret = target.sentinel_secret()
    if secret:
        options["password"] = secret
    return options


class SentinelConnection(SentinelManagedConnection):
    """redis-py's connection to the master Sentinel names, which drops its socket when a read fails, as every other
    redis-py connection does. redis-py 8.1's ``SentinelManagedConnection.read_response`` defaults
    ``disconnect_on_error`` to False (redis/redis-py#4292, open): a read cut by an exception that is not a Redis error
    (Celery's soft time limit, raised by a signal handler inside the socket read), or by a timeout a caller does not
    retry, put the connection back in the pool with the reply still on its way, and the next command on it read that
    reply as its own (the breaker's GET answered by a ZRANGE of the batched checks). The pool's own check only sees a
    reply that has already arrived. Pub/sub passes the flag explicitly and keeps its connection, as before."""

    def read_response(self, disable_decoding: Any = False, *, timeout: float | object = SENTINEL,
                      disconnect_on_error: bool | None = True, push_request: bool | None = False) -> Any:
        return super().read_response(disable_decoding=disable_decoding, timeout=timeout,
                                     disconnect_on_error=disconnect_on_error, push_request=push_request)


def connect(target: RedisTarget | str, *, caller: bool = False, probe: bool = False) -> redis.Redis:
    """A client that reconnects on its own (keepalive, health checks, retried connection errors). Through
    Sentinel, every new connection asks the sentinels for the current master, and a connection that finds its
    server demoted (READONLY) drops and asks again, so the client follows a failover by itself. A read cut short by
    any exception drops its connection, through Sentinel too (``SentinelConnection``): no reply is left for the
    next command."""
    if isinstance(target, str):
        target = RedisTarget(target)
    if not target.uses_sentinel:
        return redis.Redis.from_url(target.url, **_client_options(caller=caller, probe=probe))
    sentinel = Sentinel(list(target.sentinels), sentinel_kwargs=sentinel_options(target))  # type: ignore[no-untyped-call]
    client: redis.Redis = sentinel.master_for(  # type: ignore[no-untyped-call]
        target.master, db=target.database, connection_class=SentinelConnection, **target.master_credentials(),
        **_client_options(caller=caller, probe=probe))
    return client


def await_replicas(client: redis.Redis, replicas: int, timeout_ms: int = REPLICA_WAIT_MS) -> None:
    """Return once ``replicas`` replicas have every write the master applied so far (WAIT), or raise
    NotReplicatedError. A mark is written first on this connection, because WAIT covers the writes up to the
    connection's own last one, and the broker publishes over connections of its own."""
    if replicas <= 0:
        return
    pipe = client.pipeline(transaction=False)
    pipe.set(KEYS.replication_mark, "1", px=60_000)
    pipe.wait(replicas, timeout_ms)
    acknowledged = int(pipe.execute()[-1])
    if acknowledged < replicas:
        raise NotReplicatedError(f"{acknowledged} of {replicas} Redis replica(s) acknowledged the writes within "
                                 f"{timeout_ms} ms (REDIS_WAIT_REPLICAS); a failover now could lose them, send again")


def text(value: object) -> str:
    """Redis replies as text, whatever the client's decode setting."""
    return value.decode() if isinstance(value, bytes) else str(value)


def lua_source(*names: str) -> str:
    """The text of one or more Lua files, joined in order (a shared file of functions goes first)."""
    package = resources.files("genesys_closer.shared").joinpath("lua")
    return "\n".join(package.joinpath(name).read_text(encoding="utf-8") for name in names)


def register_lua(client: redis.Redis, *names: str) -> Script:
    """Register the script made of ``names`` (see ``lua_source``) on ``client``."""
    return client.register_script(lua_source(*names))
