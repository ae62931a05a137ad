"""HTTP intake capacity: accepted closes per second with ``genesys-closer serve`` pinned to one core.

A private Redis, the intake under ``taskset -c 0`` (one uvicorn process), and client processes on the other
core(s) sending ``POST /v1/closes`` (each a fresh valid conversation id, so each is validated, tracked and
enqueued for real) over keep-alive connections for a fixed time. No worker runs: this measures the intake alone.
The target is to never be the bottleneck: at least 50 x Genesys' 300 requests/min, i.e. 250 accepted closes/s.
"""

from __future__ import annotations

import http.client
import json
import multiprocessing
import os
import secrets
import shutil
import subprocess
import sys
import tempfile
import time
import uuid
from pathlib import Path
from urllib.parse import urlparse

from bench.emulator_capacity import run_clients
from genesys_closer.emulator.stack import RedisServer, free_port

TARGET_PER_SECOND = 250.0  # 50 x 300/min


def _client(base_url: str, token: str, seconds: float, queue: multiprocessing.Queue[int]) -> None:
    if hasattr(os, "sched_setaffinity") and (os.cpu_count() or 1) > 1:
        os.sched_setaffinity(0, set(range(1, os.cpu_count() or 2)))
    parsed = urlparse(base_url)
    connection = http.client.HTTPConnection(parsed.hostname, parsed.port, timeout=10)
    headers = {"Authorization": f"Bearer {token}", "Content-Type": "application/json"}
    accepted = 0
    deadline = time.monotonic() + seconds
    while time.monotonic() < deadline:
        connection.request("POST", "/v1/closes", body=json.dumps({"conversationId": str(uuid.uuid4())}),
                           headers=headers)
        response = connection.getresponse()
        response.read()
        accepted += response.status == 202
    queue.put(accepted)


def measure(seconds: float = 5.0, clients: int = 4) -> dict[str, float]:
    workdir = Path(tempfile.mkdtemp(prefix="genesys-closer-intake-bench-"))
    redis_server = RedisServer(workdir / "redis").start()
    token = secrets.token_hex(16)
    port = free_port()
    pin = ["taskset", "-c", "0"] if shutil.which("taskset") and (os.cpu_count() or 1) > 1 else []
    script = str(Path(sys.executable).with_name("genesys-closer"))
    env = {"PATH": os.environ["PATH"], "REDIS_URL": redis_server.url, "INTAKE_TOKENS": token,
           "INTAKE_RATE_LIMIT_PER_MINUTE": "1000000", "LOG_LEVEL": "WARNING"}
    process = subprocess.Popen([*pin, script, "serve", "--port", str(port)], env=env,
                               stdout=subprocess.DEVNULL, stderr=(workdir / "intake.log").open("wb"))
    base_url = f"http://127.0.0.1:{port}"
    try:
        deadline = time.monotonic() + 30
        while True:
            try:
                connection = http.client.HTTPConnection("127.0.0.1", port, timeout=1)
                connection.request("GET", "/healthz")
                if connection.getresponse().status == 200:
                    break
            except OSError:
                if time.monotonic() > deadline:
                    raise
                time.sleep(0.1)
        total = run_clients(_client, (base_url, token, seconds), clients, seconds)
        per_second = total / seconds
        return {"accepted_per_second": per_second, "pinned": float(bool(pin)), "seconds": seconds,
                "x_genesys_default": per_second / 5.0}
    finally:
        process.terminate()
        process.wait(timeout=20)
        redis_server.stop()
        shutil.rmtree(workdir, ignore_errors=True)


if __name__ == "__main__":
    result = measure()
    print(result)
    sys.exit(0 if result["accepted_per_second"] >= TARGET_PER_SECOND else 1)
