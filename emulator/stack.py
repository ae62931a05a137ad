"""A local stack for the demo, the tests and the benchmarks: a private Redis, the emulator, Celery workers and
Flower, each a real process on loopback, started and stopped by this module."""

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
from typing import IO

import redis

from genesys_closer.emulator.admin import EmulatorAdmin

CLOSER_ENV_PREFIXES = ("GENESYS_", "CLOSE_", "CONFIRM_", "RETRY_", "TASK_", "BROKER_", "SWEEP_", "LOG_")


def free_port() -> int:
    with socket.socket() as sock:
        sock.bind(("127.0.0.1", 0))
        return int(sock.getsockname()[1])


def _log(path: Path) -> IO[bytes]:
    path.parent.mkdir(parents=True, exist_ok=True)
    return path.open("ab")


def _stop(process: subprocess.Popen[bytes] | None, sig: int = signal.SIGTERM, group: bool = False,
          timeout: float = 20.0) -> None:
    if process is None or process.poll() is not None:
        return
    if group:
        os.killpg(process.pid, sig)
    else:
        process.send_signal(sig)
    try:
        process.wait(timeout=timeout)
    except subprocess.TimeoutExpired:
        os.killpg(process.pid, signal.SIGKILL) if group else process.kill()
        process.wait(timeout=10)


class PortTaken(RuntimeError):
    """The port a fresh server was given is in use by another process (another test's or service's server)."""


@dataclass
class RedisServer:
    """redis-server on loopback with a password, AOF (everysec) and noeviction, as everywhere in this project.

    A free port is found by binding port 0 and letting it go, so two processes can be handed the same one before
    either server binds it: the server that loses exits ("Address already in use"), and a ping on that port reaches
    the other one, which refuses this password. A first start then moves to another free port; a restart keeps its
    port (its clients know it) and fails if the port was taken meanwhile."""

    workdir: Path
    port: int = field(default_factory=free_port)
    password: str = field(default_factory=lambda: secrets.token_hex(12))
    process: subprocess.Popen[bytes] | None = None
    started: bool = field(default=False, init=False)

    @property
    def url(self) -> str:
        return f"redis://:{self.password}@127.0.0.1:{self.port}/0"

    def start(self, attempts: int = 5) -> RedisServer:
        self.workdir.mkdir(parents=True, exist_ok=True)
        attempt = 1
        while True:
            self.process = subprocess.Popen(
                ["redis-server", "--bind", "127.0.0.1", "--port", str(self.port), "--requirepass", self.password,
                 "--appendonly", "yes", "--appendfsync", "everysec", "--maxmemory-policy", "noeviction",
                 "--save", "", "--dir", str(self.workdir), "--protected-mode", "yes"],
                stdout=_log(self.workdir / "redis.log"), stderr=subprocess.STDOUT)
            try:
                self.wait_ready()
            except PortTaken:
                _stop(self.process)
                if self.started or attempt >= attempts:
                    raise
                self.port, attempt = free_port(), attempt + 1
            else:
                self.started = True
                return self

    def wait_ready(self, timeout: float = 15.0) -> None:
        client = redis.Redis.from_url(self.url)
        deadline = time.monotonic() + timeout
        try:
            while True:
                if self.process is not None and self.process.poll() is not None:
                    raise PortTaken(f"redis-server exited ({self.process.returncode}) at start on port {self.port}: "
                                    f"see {self.workdir / 'redis.log'}")
                try:
                    if client.ping():
                        return
                except redis.AuthenticationError as exc:
                    raise PortTaken(f"port {self.port} is another server's") from exc
                except (redis.ConnectionError, redis.BusyLoadingError):
                    if time.monotonic() > deadline:
                        raise
                    time.sleep(0.05)
        finally:
            client.close()

    def stop(self, sig: int = signal.SIGTERM) -> None:
        _stop(self.process, sig)
        self.process = None

    def restart(self) -> None:
        self.stop()
        self.start()


@dataclass
class EmulatorProcess:
    """``python -m genesys_closer.emulator`` in its own process (so it has a core of its own)."""

    args: list[str]
    logdir: Path
    process: subprocess.Popen[bytes] | None = None
    base_url: str = ""

    def start(self, timeout: float = 30.0) -> EmulatorProcess:
        self.logdir.mkdir(parents=True, exist_ok=True)
        self.process = subprocess.Popen([sys.executable, "-m", "genesys_closer.emulator", "--port", "0", *self.args],
                                        stdout=subprocess.PIPE, stderr=_log(self.logdir / "emulator.log"))
        assert self.process.stdout is not None
        self.base_url = self.process.stdout.readline().decode().strip()
        if not self.base_url.startswith("http://"):
            raise RuntimeError(f"emulator did not start: {self.base_url!r}")
        EmulatorAdmin(self.base_url).wait_ready(timeout)
        return self

    @property
    def admin(self) -> EmulatorAdmin:
        return EmulatorAdmin(self.base_url)

    def stop(self) -> None:
        _stop(self.process)


def closer_env(redis_url: str, emulator_url: str, **overrides: object) -> dict[str, str]:
    """The environment of a worker talking to the emulator with its demo credentials."""
    env = {k: v for k, v in os.environ.items() if not k.startswith(CLOSER_ENV_PREFIXES)}
    env.update({
        "REDIS_URL": redis_url,
        "GENESYS_CLIENT_ID": "demo-client",
        "GENESYS_CLIENT_SECRET": "demo-secret",
        "GENESYS_API_URL": emulator_url,
        "GENESYS_LOGIN_URL": emulator_url,
        "PYTHONUNBUFFERED": "1",
    })
    env.update({k.upper(): str(v) for k, v in overrides.items()})
    return env


@dataclass
class CeleryWorker:
    """A worker in its own process group: ``python -m genesys_closer.worker worker``, Celery's worker command bound to
    the app (``celery -A genesys_closer.worker.app worker`` without the umbrella CLI's imports: see
    ``worker/__main__.py``; tests/chaos/test_redis_flap.py starts the README's ``celery`` command line)."""

    name: str
    env: dict[str, str]
    logdir: Path
    concurrency: int = 4
    queues: str | None = None
    extra_args: tuple[str, ...] = ()
    loglevel: str = "INFO"
    python: str = sys.executable
    process: subprocess.Popen[bytes] | None = None
    _offset: int = 0

    @property
    def log_path(self) -> Path:
        return self.logdir / f"{self.name}.log"

    @property
    def hostname(self) -> str:
        return f"{self.name}@{socket.gethostname()}"

    def start(self) -> CeleryWorker:
        self.logdir.mkdir(parents=True, exist_ok=True)
        command = [self.python, "-m", "genesys_closer.worker", "worker", "-n", self.hostname,
                   "-c", str(self.concurrency), "-l", self.loglevel, "--without-gossip", "--without-mingle",
                   *self.extra_args]
        if self.queues:
            command += ["-Q", self.queues]
        self._offset = self.log_path.stat().st_size if self.log_path.exists() else 0
        self.process = subprocess.Popen(command, env=self.env, cwd=self.logdir, start_new_session=True,
                                        stdout=_log(self.log_path), stderr=subprocess.STDOUT)
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
        _stop(self.process, group=True)


def start_workers(count: int, env: dict[str, str], logdir: Path, concurrency: int = 4,
                  queues: str | None = None, prefix: str = "w", loglevel: str = "INFO") -> list[CeleryWorker]:
    workers = [CeleryWorker(f"{prefix}{i + 1}", env, logdir, concurrency, queues, loglevel=loglevel).start()
               for i in range(count)]
    for worker in workers:
        worker.wait_ready()
    return workers


@dataclass
class BeatProcess:
    """Beat (``python -m genesys_closer.worker beat``): scheduled sweeps and the stalled-batch redrive."""

    env: dict[str, str]
    logdir: Path
    process: subprocess.Popen[bytes] | None = None

    def start(self) -> BeatProcess:
        self.logdir.mkdir(parents=True, exist_ok=True)
        self.process = subprocess.Popen(
            [sys.executable, "-m", "genesys_closer.worker", "beat", "-l", "INFO", "--schedule",
             str(self.logdir / "beat-schedule")],
            env=self.env, cwd=self.logdir, start_new_session=True, stdout=_log(self.logdir / "beat.log"),
            stderr=subprocess.STDOUT)
        return self

    def stop(self) -> None:
        _stop(self.process, group=True)


# Flower's task list: each close's state, its result (the outcome record, or the batched read it waits for) and its
# kwargs (batch id, options); docker-compose.yml and deploy/kubernetes/flower.yaml pass the same list.
FLOWER_TASK_COLUMNS = "name,state,result,args,kwargs,received,worker"


@dataclass
class FlowerProcess:
    """Flower on loopback with basic auth."""

    env: dict[str, str]
    logdir: Path
    port: int = field(default_factory=free_port)
    user: str = "admin"
    password: str = field(default_factory=lambda: secrets.token_urlsafe(12))
    process: subprocess.Popen[bytes] | None = None

    @property
    def url(self) -> str:
        return f"http://127.0.0.1:{self.port}"

    def start(self, timeout: float = 60.0) -> FlowerProcess:
        env = {**self.env, "FLOWER_BASIC_AUTH": f"{self.user}:{self.password}"}
        self.process = subprocess.Popen(
            [sys.executable, "-m", "celery", "-A", "genesys_closer.worker.app", "flower", "--address=127.0.0.1",
             f"--port={self.port}", "--persistent=False", f"--tasks_columns={FLOWER_TASK_COLUMNS}"],
            env=env, cwd=self.logdir, start_new_session=True, stdout=_log(self.logdir / "flower.log"),
            stderr=subprocess.STDOUT)
        _wait_listening(self.process, self.port, timeout, "flower", "flower.log")
        return self

    def stop(self) -> None:
        _stop(self.process, group=True)


def _wait_listening(process: subprocess.Popen[bytes], port: int, timeout: float, what: str, log: str) -> None:
    """Until ``process`` accepts connections on loopback ``port``; RuntimeError if it exits, TimeoutError after
    ``timeout`` seconds."""
    deadline = time.monotonic() + timeout
    while time.monotonic() < deadline:
        try:
            with socket.create_connection(("127.0.0.1", port), timeout=1):
                return
        except OSError:
            if process.poll() is not None:
                raise RuntimeError(f"{what} exited; see {log}") from None
            time.sleep(0.2)
    raise TimeoutError(f"{what} did not start")


@dataclass
class IntakeProcess:
    """``genesys-closer serve`` (the HTTP intake and its console at ``/ui``) on loopback with a fresh bearer token."""

    env: dict[str, str]
    logdir: Path
    port: int = field(default_factory=free_port)
    token: str = field(default_factory=lambda: secrets.token_urlsafe(24))
    process: subprocess.Popen[bytes] | None = None

    @property
    def url(self) -> str:
        return f"http://127.0.0.1:{self.port}"

    def start(self, timeout: float = 60.0) -> IntakeProcess:
        cli = str(Path(sys.executable).with_name("genesys-closer"))
        self.process = subprocess.Popen(
            [cli, "serve", "--host", "127.0.0.1", "--port", str(self.port)],
            env={**self.env, "INTAKE_TOKENS": self.token}, cwd=self.logdir, start_new_session=True,
            stdout=_log(self.logdir / "intake.log"), stderr=subprocess.STDOUT)
        _wait_listening(self.process, self.port, timeout, "the intake", "intake.log")
        return self

    def stop(self) -> None:
        _stop(self.process, group=True)
