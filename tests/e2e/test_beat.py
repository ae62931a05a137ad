"""Scheduled sweeps with a real `celery beat` process: recorded as batches, one at a time; the recovery check after a
Redis restart that kept the lock of a check it cut off."""

from __future__ import annotations

import subprocess
import sys
from pathlib import Path

import pytest
import redis

from genesys_closer.config import load_producer_settings
from genesys_closer.config.redis_keys import KEYS
from genesys_closer.emulator import EmulatorServer
from genesys_closer.emulator.admin import EmulatorAdmin
from genesys_closer.producer.api import CloseClient
from genesys_closer.shared.locks import OwnedLock, redis_run_id
from genesys_closer.shared.names import SWEEP_TASK_NAME
from genesys_closer.shared.stores.batch_store import BatchStatus
from genesys_closer.worker.recovery.redrive import remember_redis_run_id
from tests.e2e.conftest import StartWorkers
from tests.services import BeatProcess, RedisServer, start_workers, worker_env
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


@pytest.mark.slow
def test_the_restart_check_takes_over_the_lock_of_a_check_the_restart_cut_off(
        admin: EmulatorAdmin, emulator: EmulatorServer, logdir: Path, tmp_path: Path) -> None:
    """A recovery check held the lock when Redis restarted (AOF): it comes back held, with a TTL far longer than this
    test, so only its take-over lets the restart check re-send a standalone close whose message Redis lost."""
    server = RedisServer(tmp_path / "redis").start()  # its own Redis: this test restarts it
    try:
        store = redis.Redis.from_url(server.url)
        client = CloseClient(load_producer_settings(redis_url=server.url))
        (cid,) = admin.create(1)
        client.results.pending.track("lost-in-the-restart", cid, {}, "interactive")  # tracked; its message lost
        remember_redis_run_id(store)
        assert OwnedLock(store, KEYS.redrive_lock, 3600).acquire_in_run(redis_run_id(store))
        server.restart()  # SIGTERM (AOF flushed), same port and data directory
        assert store.get(KEYS.redrive_lock) is not None
        env = worker_env(server.url, emulator.base_url, recovery_check_seconds=1)
        beat = BeatProcess(env, logdir).start()
        workers = start_workers(1, env, logdir, concurrency=2)
        try:
            wait_until(lambda: client.outcome(cid) is not None, timeout=60, message="the lost close re-sent")
        finally:
            beat.stop()
            for worker in workers:
                worker.kill()
        assert client.outcome(cid).outcome.value == "closed"  # type: ignore[union-attr]
        assert admin.conversation(cid)["open"] is False
    finally:
        server.stop()
