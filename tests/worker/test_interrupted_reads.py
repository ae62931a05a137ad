"""A Redis read interrupted by an exception must never leave its reply for the next command, through Sentinel as
through a plain URL: real redis-server and redis-sentinel on loopback, the product's ``connect`` client.

Celery's soft time limit is such an exception: billiard's SIGUSR1 handler raises ``SoftTimeLimitExceeded`` wherever
the task is, often inside a socket read. redis-py 8.1's Sentinel connection (``SentinelManagedConnection``) does not
drop its socket then (redis/redis-py#4292), so the connection went back to the pool with the reply still on its way,
and the next command read it: in ``tests/chaos/test_sentinel_failover.py`` the breaker's GET got a batched-check
ZRANGE reply and a single close ended ``not_attempted`` with that reply as its reason.
"""

from __future__ import annotations

import os
import secrets
import signal
import threading
from collections.abc import Iterator

import pytest
import redis
from billiard.exceptions import SoftTimeLimitExceeded  # type: ignore[import-untyped]
from billiard.pool import soft_timeout_sighandler  # type: ignore[import-untyped]
from pydantic import SecretStr

from genesys_closer.config.redis_target import RedisTarget
from genesys_closer.shared.redis_connection import ReplyOutOfStep, connect
from genesys_closer.worker.running.breaker import CircuitBreaker
from tests.services import RedisProcess
from tests.waiting import wait_until

MASTER = "genesys-closer"
PROBE, CHECKS, EMPTY = "test:probe", "test:checks", "test:empty"
MEMBER = "6b1ad6b7d3564916be5d5904e61c5571:b6b04d3d-b6b2-4dfa-bdca-96e231f431b0"


@pytest.fixture(scope="module")
def sentinel_target(tmp_path_factory: pytest.TempPathFactory) -> Iterator[RedisTarget]:
    """One master and one sentinel watching it (no replica, so never a failover): the client finds the master
    through the sentinel, as in production."""
    workdir = tmp_path_factory.mktemp("sentinel")
    password, sentinel_password = secrets.token_hex(8), secrets.token_hex(8)
    master = RedisProcess("master", workdir / "master", f"requirepass {password}\nsave \"\"\n").start()
    sentinel = RedisProcess("sentinel", workdir / "sentinel",
                            f"requirepass {sentinel_password}\nsentinel monitor {MASTER} 127.0.0.1 {master.port} 1\n"
                            f"sentinel auth-pass {MASTER} {password}\n", sentinel=True).start()
    target = RedisTarget(f"redis://:{password}@{MASTER}/0", sentinels=(("127.0.0.1", sentinel.port),),
                         master=MASTER, sentinel_password=SecretStr(sentinel_password))
    try:
        wait_until(lambda: _answers(target), timeout=30, message="the sentinel names the master")
        yield target
    finally:
        sentinel.stop()
        master.stop()


def _answers(target: RedisTarget) -> bool:
    try:
        return bool(connect(target, probe=True).ping())
    except redis.RedisError:
        return False


@pytest.fixture(params=["sentinel", "url"])
def target(request: pytest.FixtureRequest, redis_url: str) -> RedisTarget:
    if request.param == "url":
        return RedisTarget(redis_url)
    sentinel: RedisTarget = request.getfixturevalue("sentinel_target")
    connect(sentinel).flushdb()
    return sentinel


def interrupt_blocked_read(client: redis.Redis, watcher: redis.Redis) -> None:
    """``client`` waits for a BLPOP reply (one second away) and gets a soft time limit in the middle of its socket
    read, sent once the server shows the command blocked (the fleet's workers block in BRPOP on the same server): the
    same signal and handler as billiard's."""
    previous = signal.signal(signal.SIGUSR1, soft_timeout_sighandler)

    def send_when_blocked() -> None:
        wait_until(lambda: any(entry.get("cmd") == "blpop" for entry in watcher.client_list()), timeout=10)
        os.kill(os.getpid(), signal.SIGUSR1)

    sender = threading.Thread(target=send_when_blocked, daemon=True)
    sender.start()
    try:
        with pytest.raises(SoftTimeLimitExceeded):
            client.blpop([EMPTY], timeout=1)
    finally:
        sender.join(timeout=10)
        signal.signal(signal.SIGUSR1, previous)


def test_a_read_cut_by_the_soft_time_limit_leaves_no_reply_for_the_next_command(target: RedisTarget) -> None:
    client, watcher = connect(target), connect(target)
    client.set(PROBE, "value")
    client.zadd(CHECKS, {MEMBER: 1796139039.0})
    breaker = CircuitBreaker(client, "bucket")

    interrupt_blocked_read(client, watcher)

    # As the pump and then a close did in the failover test: a ZRANGE ... WITHSCORES, then the breaker's GET.
    assert [tuple(pair) for pair in client.zrange(CHECKS, 0, 0, withscores=True)] == [(MEMBER, 1796139039.0)]
    assert breaker.open_reason() is None
    assert client.get(PROBE) == "value"


def test_a_reply_of_another_command_is_an_error_not_an_open_breaker(redis_url: str) -> None:
    """The last line of defence, should a connection ever answer out of step again: the breaker takes only text
    for its reason; anything else raises (the close fails and is sent again) and drops the client's connections."""
    client = connect(redis_url)
    client.zadd(CHECKS, {MEMBER: 1.0})
    breaker = CircuitBreaker(client, "bucket")
    connection = client.connection_pool.get_connection()
    # Two commands whose replies nobody reads, the first blocked for a second: the pool cannot see that the
    # connection it takes back still owes them (nothing is readable yet), as after an interrupted read.
    connection.send_command("BLPOP", EMPTY, 1)
    connection.send_command("ZRANGE", CHECKS, 0, 0, "WITHSCORES")
    client.connection_pool.release(connection)
    assert breaker.open_reason() is None  # BLPOP's reply (nil), taken for the GET's: nothing tells them apart
    with pytest.raises(ReplyOutOfStep, match="another command"):
        breaker.open_reason()  # ZRANGE's reply: a list, never a reason
    client.set(breaker.open_key, "open: 403")
    assert breaker.open_reason() == "open: 403"  # the connections were dropped: replies in step again
