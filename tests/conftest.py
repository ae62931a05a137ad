"""Shared fixtures: a real emulator over loopback HTTP, settings pointing at it."""

from __future__ import annotations

from collections.abc import Iterator
from pathlib import Path

import pytest
import redis

from genesys_closer.config import WorkerSettings, load_worker_settings
from genesys_closer.emulator import EmulatorConfig, EmulatorServer, start_in_thread
from genesys_closer.emulator.admin import EmulatorAdmin
from genesys_closer.worker.factory import Service, build_service
from tests.services import RedisServer


@pytest.fixture(autouse=True)
def _clean_environment(monkeypatch: pytest.MonkeyPatch, tmp_path: Path) -> None:
    """Tests never read a developer's GENESYS_*/REDIS_URL variables."""
    import os

    for name in list(os.environ):
        if name.startswith(("GENESYS_", "CLOSE_", "CONFIRM_", "RETRY_", "TASK_", "BROKER_")) or name == "REDIS_URL":
            monkeypatch.delenv(name, raising=False)
    monkeypatch.chdir(tmp_path)  # no stray .env, and no test package shadowing a real one


@pytest.fixture
def emulator_config() -> EmulatorConfig:
    return EmulatorConfig(consistency_delay_ms=150, seed=1234, rate_limit_per_minute=100_000)


@pytest.fixture
def emulator(emulator_config: EmulatorConfig) -> Iterator[EmulatorServer]:
    server = start_in_thread(config=emulator_config)
    try:
        yield server
    finally:
        server.stop()


@pytest.fixture
def admin(emulator: EmulatorServer) -> EmulatorAdmin:
    return EmulatorAdmin(emulator.base_url)


def emulator_settings(base_url: str, **overrides: object) -> WorkerSettings:
    values: dict[str, object] = {
        "genesys_client_id": "demo-client",
        "genesys_client_secret": "demo-secret",
        "genesys_api_url": base_url,
        "genesys_login_url": base_url,
        "genesys_rate_limit_per_minute": 100_000,
        "confirm_initial_delay_seconds": 0.2,
        "confirm_timeout_seconds": 3.0,
        "confirm_max_interval_seconds": 0.5,
        "retry_base_seconds": 0.05,
        "retry_max_attempts": 5,
    }
    values.update(overrides)
    return load_worker_settings(**values)


@pytest.fixture
def settings(emulator: EmulatorServer) -> WorkerSettings:
    return emulator_settings(emulator.base_url)


@pytest.fixture
def service(settings: WorkerSettings) -> Service:
    return build_service(settings)


@pytest.fixture(scope="session")
def redis_server(tmp_path_factory: pytest.TempPathFactory) -> Iterator[RedisServer]:
    """A real redis-server on a random loopback port, password-protected, AOF everysec, noeviction."""
    server = RedisServer(tmp_path_factory.mktemp("redis")).start()
    try:
        yield server
    finally:
        server.stop()


@pytest.fixture
def redis_url(redis_server: RedisServer) -> str:
    """The session's Redis, emptied for this test."""
    redis_server.wait_ready()
    redis.Redis.from_url(redis_server.url).flushall()
    return redis_server.url


@pytest.fixture
def redis_client(redis_url: str) -> redis.Redis:
    from genesys_closer.worker.genesys.redis_connection import connect

    return connect(redis_url)


@pytest.fixture
def logdir(tmp_path: Path) -> Path:
    return tmp_path / "logs"
