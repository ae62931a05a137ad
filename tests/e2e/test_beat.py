"""Scheduled sweeps with a real `celery beat` process: recorded as batches, one at a time."""

from __future__ import annotations

import subprocess
import sys
from pathlib import Path

import redis

from genesys_closer.emulator import EmulatorServer
from genesys_closer.emulator.admin import EmulatorAdmin
from genesys_closer.producer.api import CloseClient
from genesys_closer.shared.names import SWEEP_TASK_NAME
from genesys_closer.shared.stores.batch_store import BatchStatus
from tests.e2e.conftest import StartWorkers
from tests.services import worker_env
from tests.waiting import wait_until


def test_scheduled_sweep_closes_idle_conversations(start: StartWorkers, admin: EmulatorAdmin, client: CloseClient,
                                                   redis_url: str, emulator: EmulatorServer, logdir: Path) -> None:
    """Beat starts while the worker does (the first sweep is sent 2 s after beat starts and waits in the queue for
    the worker if need be)."""
    schedule = {"sweep_schedule_seconds": 2, "sweep_min_age_minutes": 30, "sweep_idle_minutes": 20}
    idle = admin.create(5, age_minutes=120, idle_minutes=60)
    busy = admin.create(2, age_minutes=120, idle_minutes=1)
    env = worker_env(redis_url, emulator.base_url, **schedule)
    logdir.mkdir(parents=True, exist_ok=True)
    beat = subprocess.Popen([sys.executable, "-m", "celery", "-A", "genesys_closer.worker.app", "beat", "-l", "INFO",
                             "--schedule", str(logdir / "beat-schedule")], env=env, cwd=logdir,
                            stdout=(logdir / "beat.log").open("ab"), stderr=subprocess.STDOUT)
    try:
        start(1, concurrency=4, **schedule)
        finished: list[BatchStatus] = []

        def a_sweep_finished() -> bool:
            finished[:] = [b for b in client.batches() if b.label == "scheduled sweep" and b.finished]
            return bool(finished)

        try:
            wait_until(a_sweep_finished, timeout=60, interval=0.1)
        except TimeoutError as exc:
            raise AssertionError((logdir / "beat.log").read_text()[-2000:]) from exc
        assert finished[0].counts == {"closed": 5}
    finally:
        beat.terminate()
        beat.wait(timeout=20)
    for cid in idle:
        assert admin.conversation(cid)["open"] is False
    for cid in busy:
        assert admin.conversation(cid)["open"] is True
    # Later sweeps found nothing new to close: no second batch with items.
    assert all(b.total == 5 for b in client.batches() if b.label == "scheduled sweep")


def test_only_one_sweep_at_a_time(start: StartWorkers, client: CloseClient, redis_url: str) -> None:
    start(1, concurrency=2)
    redis.Redis.from_url(redis_url).set("genesys-closer:sweep-lock", "someone-else", ex=60)
    summary = client.app.send_task(SWEEP_TASK_NAME, kwargs={"filters": {}}).get(timeout=60)
    assert summary["skipped"] == "another sweep is running"
