"""A close whose pool process dies mid-run (SIGKILL: the OOM killer, an operator, a hard time limit) leaves its
in-flight lock behind, and Celery puts the late-ack message back at once (``task_reject_on_worker_lost``). Its copy
takes the lock over, because the process named in it is provably gone (``worker/running/inflight_lock.py``), instead
of waiting for the lock to expire (``TASK_TIME_LIMIT_SECONDS`` + 1 s: 61 s at the defaults).

Real Redis, a real worker, the emulator answering slowly so that the close is running when its process is killed.
The worker runs with a task time limit of an hour (the visibility timeout and the stall window above it, as the
settings require): the close ending within the test's wait shows that its copy did not wait for the lock, which
would have held it for an hour."""

from __future__ import annotations

import os
import signal

import pytest
import redis

from genesys_closer.config.redis_keys import KEYS
from genesys_closer.emulator import EmulatorConfig
from genesys_closer.emulator.admin import EmulatorAdmin
from genesys_closer.producer.api import CloseClient
from genesys_closer.worker.running.inflight_lock import holder_of, namespace_here
from tests.e2e.conftest import StartWorkers
from tests.waiting import wait_until

pytestmark = [pytest.mark.slow, pytest.mark.skipif(namespace_here() is None, reason="needs Linux /proc")]
HOUR_LONG_LOCK = {"task_soft_time_limit_seconds": 3500, "task_time_limit_seconds": 3600,
                  "broker_visibility_timeout_seconds": 3700, "batch_stall_seconds": 3800}


@pytest.fixture
def emulator_config() -> EmulatorConfig:
    return EmulatorConfig(consistency_delay_ms=50, seed=13, rate_limit_per_minute=100_000)


def test_the_copy_of_a_killed_close_takes_its_lock_over(start: StartWorkers, admin: EmulatorAdmin,
                                                         client: CloseClient, redis_url: str) -> None:
    start(1, concurrency=1, **HOUR_LONG_LOCK)
    raw = redis.Redis.from_url(redis_url, decode_responses=True)
    warm, cid = admin.create(2)
    client.close(warm)  # the fleet's token is fetched: the close killed below holds no token refresh lock
    wait_until(lambda: client.outcome(warm) is not None, timeout=60, message="the first close's outcome")
    admin.faults(latency_ms=3000)  # the close waits for its first answer when its process is killed
    client.close(cid)
    wait_until(lambda: raw.get(KEYS.inflight(cid)) is not None, timeout=60, message="the close running")
    holder = holder_of(str(raw.get(KEYS.inflight(cid))))
    assert holder is not None and 3500 < raw.ttl(KEYS.inflight(cid)) <= 3601
    os.kill(holder.pid, signal.SIGKILL)  # the pool process running the close, not the worker
    admin.faults(latency_ms=0)
    wait_until(lambda: client.outcome(cid) is not None, timeout=90, message="the close's outcome")
    assert client.outcome(cid).outcome.value in {"closed", "already_closed"}  # type: ignore[union-attr]
    assert admin.stats()["conversations_open"] == 0
    # Released by the copy that took it over: its outcome is written before its lock is let go.
    wait_until(lambda: raw.get(KEYS.inflight(cid)) is None, timeout=30, message="the copy's lock released")
    assert not dict(client.results.pending.entries())
