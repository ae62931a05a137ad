"""Flower in front of the shared fleet."""

from __future__ import annotations

import json
import time
from pathlib import Path

import requests

from genesys_closer.emulator import EmulatorServer
from genesys_closer.emulator.admin import EmulatorAdmin
from genesys_closer.producer.api import CloseClient
from tests.services import FlowerProcess, worker_env
from tests.waiting import wait_until


def test_flower_shows_tasks_behind_basic_auth(admin: EmulatorAdmin, client: CloseClient,
                                              redis_url: str, emulator: EmulatorServer, logdir: Path) -> None:
    flower = FlowerProcess(worker_env(redis_url, emulator.base_url), logdir).start()
    auth = (flower.user, flower.password)
    try:
        # Flower is listening; wait until it also follows the workers' events (it lists them once it does).
        wait_until(lambda: len(requests.get(f"{flower.url}/api/workers", params={"refresh": "1"}, auth=auth,
                                            timeout=10).json()) >= 2, timeout=30)
        ids = admin.create(3)
        for cid in ids:
            client.close(cid, wait=True, timeout=60)
        assert requests.get(f"{flower.url}/api/tasks", timeout=10).status_code == 401
        assert requests.get(f"{flower.url}/api/tasks", auth=(flower.user, "wrong"), timeout=10).status_code == 401
        deadline = time.monotonic() + 30
        while True:
            tasks = requests.get(f"{flower.url}/api/tasks", auth=(flower.user, flower.password), timeout=10).json()
            done = {t["args"]: t for t in tasks.values() if t.get("state") == "SUCCESS" and t.get("args")}
            if len(done) >= 3 or time.monotonic() > deadline:
                break
            time.sleep(0.5)
        for cid in ids:
            task = next(t for args, t in done.items() if cid in args)
            assert task["name"] == "worker.tasks.close_conversation"
            assert "'outcome': 'closed'" in task["result"]
        page = json.dumps(tasks)
        assert "demo-secret" not in page and "Bearer" not in page
        for token in list(emulator.state.tokens):
            assert token not in page
    finally:
        flower.stop()
