"""Emulator capacity: simple authenticated GETs per second with the emulator pinned to one core.

The emulator runs under ``taskset -c 0``; two client processes on the other core(s) send
``GET /api/v2/conversations/messages/{id}`` over keep-alive connections (``http.client``) for a fixed time.
"""

from __future__ import annotations

import base64
import http.client
import json
import multiprocessing
import os
import shutil
import subprocess
import sys
import time
from collections.abc import Callable
from urllib.parse import urlparse

from genesys_closer.emulator.admin import EmulatorAdmin


def _client(base_url: str, token: str, cid: str, seconds: float, queue: multiprocessing.Queue[int]) -> None:
    if hasattr(os, "sched_setaffinity") and (os.cpu_count() or 1) > 1:
        os.sched_setaffinity(0, set(range(1, os.cpu_count() or 2)))
    parsed = urlparse(base_url)
    connection = http.client.HTTPConnection(parsed.hostname, parsed.port, timeout=10)
    headers = {"Authorization": f"Bearer {token}"}
    count = 0
    deadline = time.monotonic() + seconds
    while time.monotonic() < deadline:
        connection.request("GET", f"/api/v2/conversations/messages/{cid}", headers=headers)
        response = connection.getresponse()
        response.read()
        count += response.status == 200
    queue.put(count)


def run_clients(target: Callable[..., None], args: tuple[object, ...], clients: int, seconds: float) -> int:
    """Run ``clients`` processes of ``target(*args, queue)`` and add up the counts they report."""
    queue: multiprocessing.Queue[int] = multiprocessing.Queue()
    workers = [multiprocessing.Process(target=target, args=(*args, queue)) for _ in range(clients)]
    for worker in workers:
        worker.start()
    total = sum(queue.get(timeout=seconds + 30) for _ in workers)
    for worker in workers:
        worker.join()
    return total


def measure(seconds: float = 5.0, clients: int = 2) -> dict[str, float]:
    pin = ["taskset", "-c", "0"] if shutil.which("taskset") and (os.cpu_count() or 1) > 1 else []
    process = subprocess.Popen([*pin, sys.executable, "-m", "genesys_closer.emulator", "--port", "0",
                                "--conversations", "1",
                                "--rate-limit-per-minute", "100000000"], stdout=subprocess.PIPE, text=True)
    try:
        assert process.stdout is not None
        base_url = process.stdout.readline().strip()
        admin = EmulatorAdmin(base_url)
        admin.wait_ready()
        cid = admin.conversations()[0]["id"]
        parsed = urlparse(base_url)
        connection = http.client.HTTPConnection(parsed.hostname, parsed.port)
        basic = base64.b64encode(b"demo-client:demo-secret").decode()
        connection.request("POST", "/oauth/token", body="grant_type=client_credentials",
                           headers={"Authorization": f"Basic {basic}",
                                    "Content-Type": "application/x-www-form-urlencoded"})
        token = json.loads(connection.getresponse().read())["access_token"]
        total = run_clients(_client, (base_url, token, cid, seconds), clients, seconds)
        return {"requests_per_second": total / seconds, "pinned": float(bool(pin)), "seconds": seconds}
    finally:
        process.terminate()
        process.wait(timeout=10)


if __name__ == "__main__":
    print(measure())
