"""Real services for tests: a password-protected redis-server and `celery worker` processes, on loopback only."""

from __future__ import annotations

import os
import secrets
import signal
import socket
import subprocess
import sys
import time
from dataclasses import dataclass, field
from pathlib import Path

import redis

REPO = Path(__file__).resolve().parent.parent


def free_port() -> int:
    with socket.socket() as sock:
        sock.bind(("127.0.0.1", 0))
        return int(sock.getsockname()[1])


@dataclass
class RedisServer:
    workdir: Path
    port: int = field(default_factory=free_port)
    password: str = field(default_factory=lambda: secrets.token_hex(12))
    process: subprocess.Popen[bytes] | None = None

    @property
    def url(self) -> str:
        return f"redis://:{self.password}@127.0.0.1:{self.port}/0"

    def start(self) -> RedisServer:
        self.workdir.mkdir(parents=True, exist_ok=True)
        self.process = subprocess.Popen(
            ["redis-server", "--bind", "127.0.0.1", "--port", str(self.port), "--requirepass", self.password,
             "--appendonly", "yes", "--appendfsync", "everysec", "--maxmemory-policy", "noeviction",
             "--save", "", "--dir", str(self.workdir), "--protected-mode", "yes"],
            stdout=open(self.workdir / "redis.log", "ab"), stderr=subprocess.STDOUT)  # noqa: SIM115
        self.wait_ready()
        return self

    def wait_ready(self, timeout: float = 15.0) -> None:
        client = redis.Redis.from_url(self.url)
        deadline = time.monotonic() + timeout
        while True:
            try:
                if client.ping():
                    return
            except (redis.ConnectionError, redis.BusyLoadingError):
                if time.monotonic() > deadline:
                    raise
                time.sleep(0.05)

    def stop(self, sig: int = signal.SIGTERM) -> None:
        if self.process is not None and self.process.poll() is None:
            self.process.send_signal(sig)
            self.process.wait(timeout=15)
        self.process = None

    def restart(self) -> None:
        self.stop()
        self.start()


def worker_env(redis_url: str, emulator_url: str, **overrides: object) -> dict[str, str]:
    env = {k: v for k, v in os.environ.items() if not k.startswith(("GENESYS_", "CLOSE_", "CONFIRM_", "RETRY_",
                                                                    "TASK_", "BROKER_"))}
    env.update({
        "REDIS_URL": redis_url,
        "GENESYS_CLIENT_ID": "demo-client",
        "GENESYS_CLIENT_SECRET": "demo-secret",
        "GENESYS_API_URL": emulator_url,
        "GENESYS_LOGIN_URL": emulator_url,
        "GENESYS_RATE_LIMIT_PER_MINUTE": "60000",
        "CONFIRM_INITIAL_DELAY_SECONDS": "0.1",
        "CONFIRM_MAX_INTERVAL_SECONDS": "0.3",
        "CONFIRM_TIMEOUT_SECONDS": "5",
        "RETRY_BASE_SECONDS": "0.1",
        "RETRY_INLINE_MAX_WAIT_SECONDS": "3",
        "GENESYS_DEFAULT_COOLDOWN_SECONDS": "2",
        "TASK_SOFT_TIME_LIMIT_SECONDS": "20",
        "TASK_TIME_LIMIT_SECONDS": "25",
        "TASK_MAX_COUNTDOWN_SECONDS": "5",
        "BROKER_VISIBILITY_TIMEOUT_SECONDS": "35",
        "BROKER_RESTORE_INTERVAL_SECONDS": "2",
        "PYTHONUNBUFFERED": "1",
    })
    env.update({k.upper(): str(v) for k, v in overrides.items()})
    return env


@dataclass
class CeleryWorker:
    name: str
    env: dict[str, str]
    logdir: Path
    concurrency: int = 4
    queues: str | None = None
    process: subprocess.Popen[bytes] | None = None

    @property
    def log_path(self) -> Path:
        return self.logdir / f"{self.name}.log"

    def start(self) -> CeleryWorker:
        self.logdir.mkdir(parents=True, exist_ok=True)
        command = [sys.executable, "-m", "celery", "-A", "worker.app", "worker", "-n", f"{self.name}@%h",
                   "-c", str(self.concurrency), "-l", "INFO", "--without-gossip", "--without-mingle"]
        if self.queues:
            command += ["-Q", self.queues]
        self._offset = self.log_path.stat().st_size if self.log_path.exists() else 0
        self.process = subprocess.Popen(command, env=self.env, cwd=self.logdir, start_new_session=True,
                                        stdout=open(self.log_path, "ab"), stderr=subprocess.STDOUT)  # noqa: SIM115
        return self

    def wait_ready(self, timeout: float = 60.0) -> None:
        deadline = time.monotonic() + timeout
        while time.monotonic() < deadline:
            text = self.log_path.read_bytes()[self._offset:].decode(errors="replace")
            if " ready." in text:
                return
            if self.process is not None and self.process.poll() is not None:
                raise RuntimeError(f"worker {self.name} exited:\n{text[-3000:]}")
            time.sleep(0.1)
        raise TimeoutError(f"worker {self.name} not ready:\n{self.log_path.read_text()[-3000:]}")

    def kill(self, sig: int = signal.SIGKILL) -> None:
        """Signal the whole process group (the worker and its pool children)."""
        if self.process is not None and self.process.poll() is None:
            os.killpg(self.process.pid, sig)
            self.process.wait(timeout=30)

    def stop(self) -> None:
        if self.process is None or self.process.poll() is not None:
            return
        os.killpg(self.process.pid, signal.SIGTERM)
        try:
            self.process.wait(timeout=20)
        except subprocess.TimeoutExpired:
            self.kill()


def start_workers(count: int, env: dict[str, str], logdir: Path, concurrency: int = 4,
                  queues: str | None = None) -> list[CeleryWorker]:
    workers = [CeleryWorker(f"w{i + 1}", env, logdir, concurrency, queues).start() for i in range(count)]
    for worker in workers:
        worker.wait_ready()
    return workers
