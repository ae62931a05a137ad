"""The liveness probe (``python -m genesys_closer.worker.ops.health``) against real workers, beat and Redis.

It must tell a busy, healthy worker (a batch's items queued behind it) from one that is up, answers remote control,
and no longer consumes; it must not blame a worker for Redis being away; and it checks beat by its schedule.
"""

from __future__ import annotations

import os
import subprocess
import sys
import time
from pathlib import Path

import redis
from celery.utils.nodenames import worker_direct
from tenacity import retry as retrying
from tenacity import retry_if_exception_type, stop_after_attempt, wait_fixed

from genesys_closer.config import ProducerSettings
from genesys_closer.emulator import EmulatorServer
from genesys_closer.emulator.admin import EmulatorAdmin
from genesys_closer.producer.api import CloseClient
from genesys_closer.shared.celery_config import producer_app
from genesys_closer.shared.names import QUEUES
from tests.e2e.conftest import StartWorkers
from tests.services import BeatProcess, free_port, worker_env
from tests.waiting import wait_until


def health(env: dict[str, str], *args: str) -> subprocess.CompletedProcess[str]:
    return subprocess.run([sys.executable, "-m", "genesys_closer.worker.ops.health", *args], env=env,
                          capture_output=True, text=True, timeout=60, check=False)


def test_probe_tells_a_busy_worker_from_one_that_stopped_consuming(
        start: StartWorkers, admin: EmulatorAdmin, client: CloseClient, redis_url: str, emulator: EmulatorServer,
        producer_settings: ProducerSettings) -> None:
    [worker] = start(1, concurrency=2, genesys_rate_limit_per_minute=120)
    env = worker_env(redis_url, emulator.base_url)
    batch = client.close_many(admin.create(300), label="keeps-the-worker-busy")
    wait_until(lambda: batch.status().done >= 2, timeout=60)
    busy = health(env, "--hostname", worker.hostname, "--timeout", "10")
    assert busy.returncode == 0 and "consuming" in busy.stdout, busy.stdout + busy.stderr  # behind ~300 queued items
    control = producer_app(producer_settings).control
    # Celery does not retry a broadcast; one fresh-clone run met a connection closed by the server here.
    cancel = retrying(retry=retry_if_exception_type(redis.ConnectionError), stop=stop_after_attempt(3),
                      wait=wait_fixed(0.2), reraise=True)(control.cancel_consumer)
    for queue in (*QUEUES, worker_direct(worker.hostname).name):  # up and answering, but consuming nothing
        cancel(queue, destination=[worker.hostname], reply=True, timeout=5)
    assert control.ping(destination=[worker.hostname], timeout=5)  # a ping-based check would call it healthy
    stopped = health(env, "--hostname", worker.hostname, "--timeout", "5")
    assert stopped.returncode == 1 and "NOT consuming" in stopped.stdout, stopped.stdout + stopped.stderr


def test_probe_does_not_blame_the_worker_when_redis_is_away(emulator: EmulatorServer) -> None:
    env = worker_env(f"redis://127.0.0.1:{free_port()}/0", emulator.base_url)  # nothing listens there
    away = health(env, "--timeout", "5")
    assert away.returncode == 3 and "Redis unreachable" in away.stdout, away.stdout + away.stderr
    assert health(env, "--timeout", "5", "--broker-down-ok").returncode == 0  # liveness: restarting cannot help


def test_beat_probe_reads_the_schedule_beat_writes(redis_url: str, emulator: EmulatorServer, logdir: Path) -> None:
    env = worker_env(redis_url, emulator.base_url)
    schedule = logdir / "beat-schedule"  # BeatProcess runs `celery beat --schedule logdir/beat-schedule`
    beat = BeatProcess(env, logdir).start()
    try:
        wait_until(lambda: any(logdir.glob("beat-schedule*")), timeout=60, message="beat wrote its schedule")
        alive = health(env, "--beat-schedule", str(schedule))
        assert alive.returncode == 0, alive.stdout + alive.stderr
    finally:
        beat.stop()
    stale = time.time() - 1000  # beat writes at least every 180 s: 1,000 s without a write is a stuck beat
    for path in logdir.glob("beat-schedule*"):
        os.utime(path, (stale, stale))
    stuck = health(env, "--beat-schedule", str(schedule))
    assert stuck.returncode == 1 and "NOT alive" in stuck.stdout
    assert health(env, "--beat-schedule", str(logdir / "no-such-schedule")).returncode == 1
