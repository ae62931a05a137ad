"""kombu's Redis channel builds a new redis-py client for every command it sends outside its event loop.

``kombu.transport.redis.Channel.conn_or_acquire()`` (kombu 5.7) runs for each message published (a task, a batch
item handed on) and for each event (``task-sent``, ``task-waiting``, ``task-succeeded``), and each time it calls
``_create_client()``: a new ``redis.Redis`` over the channel's connection pool, whose constructor copies redis-py's
table of some 250 reply callbacks. That copy was 4.5 % of a worker's CPU in a profile of 1,000 batch closes; the
client is otherwise stateless (commands take a connection from the pool and give it back).

``apply()`` (idempotent; ``worker.app.build_app`` calls it) makes the channel keep the client it built and use it
again as long as it is bound to the channel's current pool. A pool the channel drops (a broker reconnect, the
channel closed) gets a new client on its next use, so nothing outlives its connections.
``tests/worker/test_channel_client.py`` checks both on a real Redis.
"""

from __future__ import annotations

from collections.abc import Iterator
from contextlib import contextmanager
from typing import Any

from kombu.transport import redis as kombu_redis

from genesys_closer.worker.broker.reconnect_fixes import applied, marked

_CACHED = "_genesys_closer_client"


@marked
@contextmanager
def conn_or_acquire(self: Any, client: Any = None) -> Iterator[Any]:
    if client:
        yield client
        return
    pool = self.pool
    cached = self.__dict__.get(_CACHED)
    if cached is None or cached.connection_pool is not pool:
        cached = self.__dict__[_CACHED] = self._create_client()
    yield cached


def apply() -> None:
    if not applied(kombu_redis.Channel.conn_or_acquire):
        kombu_redis.Channel.conn_or_acquire = conn_or_acquire  # type: ignore[method-assign]
