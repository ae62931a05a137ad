"""A standalone close running when Redis restarts is cancelled by its worker (Celery terminates late-ack tasks on a
connection loss) and must stay in the broker until it runs again: the recovery check re-sends only what the broker
no longer holds, so a message acknowledged after the check looked would wait for the stall window (300 s).

Before the fix (``worker/broker/reconnect_fixes.py``, fix 4) Celery acknowledged such a message once the killed pool
process was reported, because the ``task-cancelled`` event it sends first could not go out over the lost connection.
That is what made ``test_chaos.py::test_redis_restart_mid_batch`` miss an outcome on a loaded machine. Real Redis
(AOF, SIGTERM, same port and data), a real worker and beat, the emulator answering slowly so that both closes are
running when Redis goes. Every setting is the product's default except beat's RECOVERY_CHECK_SECONDS (2 s instead of
10 s): beat starts only after the broker's hold is checked, and how soon its first check comes is not what this test
proves (the re-sent copy must not need the 300 s stall window)."""

from __future__ import annotations

import subprocess
import sys
from pathlib import Path

import pytest
import redis

from genesys_closer.emulator import EmulatorConfig, EmulatorServer
from genesys_closer.emulator.admin import EmulatorAdmin
from genesys_closer.producer.api import CloseClient
from genesys_closer.worker.recovery.broker_scan import held_closes
from tests.chaos.test_chaos import PRODUCT_DEFAULTS
from tests.e2e.conftest import StartWorkers
from tests.services import BeatProcess, RedisServer, worker_env
from tests.waiting import wait_until

pytestmark = pytest.mark.slow


@pytest.fixture
def emulator_config() -> EmulatorConfig:
    return EmulatorConfig(consistency_delay_ms=50, seed=12, rate_limit_per_minute=100_000)


def running(client: CloseClient, task_ids: set[str]) -> bool:
    replies = client.app.control.inspect(timeout=1.0).active() or {}
    active = {str(request.get("id")) for requests in replies.values() for request in requests or []}
    return task_ids <= active


def test_a_close_cancelled_by_a_redis_restart_stays_in_the_broker_and_ends(
        start: StartWorkers, admin: EmulatorAdmin, client: CloseClient, redis_server: RedisServer, redis_url: str,
        emulator: EmulatorServer, logdir: Path) -> None:
    (worker,) = start(1, concurrency=2, **PRODUCT_DEFAULTS)
    admin.faults(latency_ms=3000)  # both closes are still waiting for their first answer when Redis goes
    singles = admin.create(2)
    task_ids = {str(client.close(cid)) for cid in singles}
    wait_until(lambda: running(client, task_ids), timeout=60, message="both closes running")
    redis_server.restart()  # SIGTERM (AOF flushed), same port and data directory
    admin.faults(latency_ms=0)
    env = worker_env(redis_url, emulator.base_url)
    probe = subprocess.run([sys.executable, "-m", "genesys_closer.worker.ops.health", "--hostname", worker.hostname,
                            "--timeout", "60"], env=env, capture_output=True, text=True, timeout=120, check=False)
    assert probe.returncode == 0, probe.stdout + probe.stderr  # reconnected; its killed pool processes replaced

    held = {h.task_id for h in held_closes(redis.Redis.from_url(redis_url))}
    unfinished = {task_id for task_id, entry in client.results.pending.entries()
                  if client.outcome(str(entry["conversation_id"])) is None}
    assert unfinished <= held  # none is gone from the broker without an outcome (it would wait 300 s)

    beat_settings = {**PRODUCT_DEFAULTS, "recovery_check_seconds": 2}
    beat = BeatProcess(worker_env(redis_url, emulator.base_url, **beat_settings), logdir).start()
    try:  # well inside the 300 s stall window: the restart's recovery delivers them again
        wait_until(lambda: all(client.outcome(cid) is not None for cid in singles), timeout=120)
        wait_until(lambda: not dict(client.results.pending.entries()), timeout=60)
    finally:
        beat.stop()
    assert {client.outcome(cid).outcome.value for cid in singles} <= {"closed", "already_closed"}  # type: ignore[union-attr]
    assert admin.stats()["conversations_open"] == 0
