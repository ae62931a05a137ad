"""Operations through the real pieces: Flower with basic auth, Prometheus metrics, liveness, redacted logs."""

from __future__ import annotations

import json
import signal
import subprocess
import sys
import time
from pathlib import Path

import pytest
import redis
import requests

from genesys_closer.emulator import EmulatorServer
from genesys_closer.emulator.admin import EmulatorAdmin
from genesys_closer.producer.api import CloseClient
from tests.e2e.conftest import StartWorkers
from tests.services import CeleryWorker, free_port, worker_env


def test_worker_metrics(start: StartWorkers, admin: EmulatorAdmin, client: CloseClient) -> None:
    port = free_port()
    start(1, concurrency=2, metrics_port=port)
    for task_id in [client.close(cid) for cid in admin.create(3)]:  # sent at once, each waited for
        client.result(str(task_id), timeout=60)
    text = requests.get(f"http://127.0.0.1:{port}/metrics", timeout=10).text
    assert 'genesys_closer_closes_total{org="default",outcome="closed"} 3.0' in text
    assert 'genesys_closer_api_requests_total{org="default",route="PATCH /api/v2/conversations/messages/' \
           '{conversationId}",status="200"} 3.0' in text
    assert "genesys_closer_confirm_seconds_count 3.0" in text
    assert 'genesys_closer_token_refreshes_total{org="default"} 1.0' in text


def test_liveness_probe_fails_when_the_worker_stops_consuming(start: StartWorkers, redis_url: str,
                                                               emulator: EmulatorServer) -> None:
    """The frozen worker's probe waits 1 s for an answer, not the healthy one's 5 s: a stopped process answers
    after neither, and the healthy probe returns as soon as its worker answers."""
    [worker] = start(1, concurrency=1)
    env = worker_env(redis_url, emulator.base_url)
    command = [sys.executable, "-m", "genesys_closer.worker.ops.health", "--hostname", worker.hostname, "--timeout"]
    healthy = subprocess.run([*command, "5"], env=env, capture_output=True, text=True, timeout=30, check=False)
    assert healthy.returncode == 0, healthy.stdout + healthy.stderr
    assert worker.process is not None
    import os

    os.killpg(worker.process.pid, signal.SIGSTOP)  # alive but not consuming
    try:
        frozen = subprocess.run([*command, "1"], env=env, capture_output=True, text=True, timeout=30, check=False)
        assert frozen.returncode == 1 and "NOT consuming" in frozen.stdout
    finally:
        os.killpg(worker.process.pid, signal.SIGCONT)


def test_no_secret_or_token_anywhere_after_a_debug_batch(start: StartWorkers, admin: EmulatorAdmin,
                                                         client: CloseClient, redis_url: str,
                                                         emulator: EmulatorServer, logdir: Path) -> None:
    start(2, concurrency=3, loglevel="DEBUG", log_format="json")
    ids = admin.create(60)
    batch = client.close_many(ids)
    deadline = time.monotonic() + 60
    while admin.stats()["conversation_patches"] < 20 and time.monotonic() < deadline:
        time.sleep(0.05)
    first_tokens = list(emulator.state.tokens)
    admin.revoke_tokens()  # 401s and a refresh happen mid-batch (or in the batch after it)
    assert batch.wait(timeout=120).counts == {"closed": 60}
    assert client.close_many(admin.create(5)).wait(timeout=60).counts == {"closed": 5}
    tokens = first_tokens + list(emulator.state.tokens)
    assert len(set(tokens)) == 2
    forbidden = [b"demo-secret", *(t.encode() for t in tokens)]
    haystacks = {path.name: path.read_bytes() for path in logdir.glob("*.log")}
    assert all(b"DEBUG" in text for text in haystacks.values())
    raw = redis.Redis.from_url(redis_url)
    haystacks["redis"] = b"".join((raw.dump(key) or b"") + key for key in raw.keys("*"))
    haystacks["results"] = "".join(json.dumps(r.as_dict()) for r in batch.results()).encode()
    for name, text in haystacks.items():
        for needle in forbidden:
            assert needle not in text, f"{needle[:6]!r}... found in {name}"
        assert b"Bearer " not in text and b"Basic " not in text, name


@pytest.mark.parametrize("secret_line", [
    "Authorization: Bearer abcdefghijklmnop", "token={'access_token': 'abcdefghijkl'}",
    "redis://:hunter22@redis:6379/0", "client_secret=demo-secret",
])
def test_redactor_patterns(secret_line: str) -> None:
    from genesys_closer.shared.logging_setup import Redactor

    cleaned = Redactor(["demo-secret"])(secret_line)
    assert "abcdefghijkl" not in cleaned and "hunter22" not in cleaned and "demo-secret" not in cleaned
    assert "[REDACTED]" in cleaned


@pytest.mark.parametrize(("variable", "env"), [
    ("GENESYS_CLIENT_SECRET", {"GENESYS_CLIENT_SECRET": ""}),
    ("GENESYS_CLIENT_ID", {"GENESYS_CLIENT_ID": " "}),
    ("GENESYS_RATE_LIMIT_PER_MINUTE", {"GENESYS_RATE_LIMIT_PER_MINUTE": "0"}),
    ("CLOSE_ALLOWED_POLICIES", {"CLOSE_ALLOWED_POLICIES": "fail,nuke"}),
])
def test_misconfigured_worker_refuses_to_start(redis_url: str, emulator: EmulatorServer, logdir: Path,
                                               variable: str, env: dict[str, str]) -> None:
    worker = CeleryWorker("misconfigured", {**worker_env(redis_url, emulator.base_url), **env}, logdir, 1).start()
    assert worker.process is not None
    code = worker.process.wait(timeout=60)
    text = worker.log_path.read_text()
    ours = [line for line in text.splitlines() if line.startswith("genesys-closer worker:")]
    assert code == 78  # EX_CONFIG
    assert len(ours) == 1 and variable in ours[0] and "Traceback" not in text, text  # (Celery may warn about root)
