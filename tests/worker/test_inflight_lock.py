"""The in-flight lock's take-over from a holder that is provably gone, against a real Redis and real processes."""

from __future__ import annotations

import os
import subprocess
import sys

import pytest
import redis

from genesys_closer.config.redis_keys import KEYS
from genesys_closer.shared.locks import OwnedLock
from genesys_closer.worker.running.inflight_lock import (
    Holder,
    InflightLock,
    holder_here,
    holder_of,
    is_gone,
    namespace_here,
    start_time,
    token_for,
)

NAME = KEYS.inflight("3b47a74f-a827-4166-ae62-f6ba6d7268ae")
pytestmark = pytest.mark.skipif(namespace_here() is None, reason="needs Linux /proc")


def exited_process() -> Holder:
    """A process of this namespace that ran and is gone (exited and reaped)."""
    child = subprocess.Popen([sys.executable, "-c", "import time; time.sleep(30)"])
    started = start_time(child.pid)
    assert started is not None
    child.kill()
    child.wait()
    return Holder(str(namespace_here()), child.pid, started)


def hold(client: redis.Redis, task_id: str, holder: Holder | None, ttl: float = 61) -> None:
    assert OwnedLock(client, NAME, ttl).acquire(token_for(task_id, holder))


def test_a_copy_takes_over_from_a_run_whose_process_is_gone(redis_client: redis.Redis) -> None:
    gone = exited_process()
    hold(redis_client, "task-1", gone)
    copy = InflightLock(redis_client, NAME, 61)
    assert copy.acquire("task-1")  # the same task, redelivered
    token = str(redis_client.get(NAME))
    assert holder_of(token) == holder_here() and token.startswith("task-1|")
    assert 60 < redis_client.pttl(NAME) / 1000 <= 61  # a full time-to-live for the new holder
    assert copy.release() and redis_client.get(NAME) is None


def test_a_live_holder_is_never_taken_over(redis_client: redis.Redis) -> None:
    hold(redis_client, "task-1", holder_here())  # this process: alive
    for task_id in ("task-1", "task-2"):  # the same task redelivered, and another close: both wait
        assert not InflightLock(redis_client, NAME, 61).acquire(task_id)
    assert holder_of(str(redis_client.get(NAME))) == holder_here()


def test_of_two_copies_racing_for_a_gone_holder_one_wins(redis_client: redis.Redis) -> None:
    hold(redis_client, "task-1", exited_process())
    first, second = InflightLock(redis_client, NAME, 61), InflightLock(redis_client, NAME, 61)
    assert first.acquire("task-1")
    assert not second.acquire("task-1")  # the winner (this process) is alive
    assert not second.lock.take_over(token_for("task-1", exited_process()), "task-1|x")  # not the token held


@pytest.mark.parametrize("why", ["another namespace", "no holder in the token"])
def test_a_holder_that_cannot_be_proved_gone_is_waited_for(redis_client: redis.Redis, why: str) -> None:
    gone = exited_process()
    if why == "another namespace":  # its PID means nothing here: another machine, container or boot
        hold(redis_client, "task-1", Holder("other-boot/1-2", gone.pid, gone.started))
    else:  # a token written before the holder was recorded
        assert OwnedLock(redis_client, NAME, 61).acquire("task-1")
    assert not InflightLock(redis_client, NAME, 61).acquire("task-1")


def test_gone_means_no_process_with_that_pid_and_start_time() -> None:
    here = holder_here()
    assert here is not None and not is_gone(here)
    assert is_gone(Holder(here.namespace, here.pid, here.started + 1))  # the PID reused by a later process
    assert is_gone(exited_process())
    assert not is_gone(Holder(here.namespace, 1, start_time(1) or 0))  # PID 1 (maybe another user's): alive


def test_a_task_id_cannot_forge_the_holder() -> None:
    here = holder_here()
    assert here is not None
    forged = f"x|{here.namespace}:{os.getpid() + 1}:1"
    assert holder_of(token_for(forged, here)) == here
    assert holder_of(token_for(forged, None)) is None  # a process that cannot be checked names no holder
    assert holder_of(forged + "|") is None and holder_of("plain-task-id") is None
