"""A real `genesys-closer serve` (uvicorn, one or several processes) on a loopback port, for the intake tests."""

from __future__ import annotations

import contextlib
import os
import secrets
import signal
import subprocess
import sys
from collections.abc import Iterator
from pathlib import Path

import requests

from tests.services import free_port
from tests.waiting import wait_until

TOKEN_A, TOKEN_B = secrets.token_hex(16), secrets.token_hex(16)
BASIC = ("datadog-action", secrets.token_hex(12))
CLI = str(Path(sys.executable).with_name("genesys-closer"))


class Intake:
    def __init__(self, url: str, log: Path, process: subprocess.Popen[bytes], redis_url: str) -> None:
        self.url = url
        self.redis_url = redis_url
        self.log = log
        self.process = process
        self.port = int(url.rsplit(":", 1)[1])

    def call(self, method: str, path: str, token: str | None = TOKEN_A, **kwargs: object) -> requests.Response:
        headers = dict(kwargs.pop("headers", {}) or {})  # type: ignore[call-overload]
        if token:
            headers["Authorization"] = f"Bearer {token}"
        return requests.request(method, f"{self.url}{path}", headers=headers, timeout=60, **kwargs)  # type: ignore[arg-type]

    def kill(self) -> None:
        """SIGKILL every process of the intake (its uvicorn workers too): nothing gets to clean up."""
        with contextlib.suppress(ProcessLookupError):
            os.killpg(self.process.pid, signal.SIGKILL)
        self.process.wait(timeout=20)


def _up(url: str) -> bool:
    try:
        return requests.get(f"{url}/healthz", timeout=1).status_code == 200
    except requests.ConnectionError:
        return False


@contextlib.contextmanager
def running_intake(redis_url: str, log: Path, *, workers: int = 1, **env: object) -> Iterator[Intake]:
    """``genesys-closer serve`` with both tokens and Basic auth; ``env`` adds or overrides variables."""
    port = free_port()
    variables = {"PATH": os.environ["PATH"], "REDIS_URL": redis_url, "INTAKE_TOKENS": f"{TOKEN_A},{TOKEN_B}",
                 "INTAKE_BASIC_AUTH": f"{BASIC[0]}:{BASIC[1]}", "LOG_LEVEL": "DEBUG",
                 **{name: str(value) for name, value in env.items()}}
    with log.open("wb") as out:
        process = subprocess.Popen([CLI, "serve", "--port", str(port), "--workers", str(workers)], env=variables,
                                   stdout=out, stderr=subprocess.STDOUT, start_new_session=True)
    url = f"http://127.0.0.1:{port}"
    intake = Intake(url, log, process, redis_url)
    try:
        wait_until(lambda: _up(url), timeout=30, message="intake did not start")
        yield intake
    finally:
        if process.poll() is None:
            process.terminate()
            try:
                process.wait(timeout=20)
            except subprocess.TimeoutExpired:
                intake.kill()
