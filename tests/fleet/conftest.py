"""Tests on the shared fleet: the session's two real workers, Redis database 1 and one emulator, reset per test.

The fixtures ``admin``, ``redis_url``, ``redis_client``, ``emulator`` and ``client`` point at the fleet here, so a
test reads like any end-to-end test; it must leave no work behind (every close it starts has ended).
"""

from __future__ import annotations

from dataclasses import dataclass

import pytest
import redis
from typer.testing import CliRunner

from genesys_closer.config import ProducerSettings, load_producer_settings
from genesys_closer.emulator import EmulatorServer
from genesys_closer.emulator.admin import EmulatorAdmin
from genesys_closer.producer import cli as cli_module
from genesys_closer.producer.api import CloseClient
from genesys_closer.shared.redis_connection import connect
from tests.conftest import Fleet
from tests.services import worker_env


@pytest.fixture
def emulator(on_fleet: Fleet) -> EmulatorServer:
    return on_fleet.emulator


@pytest.fixture
def admin(on_fleet: Fleet) -> EmulatorAdmin:
    return on_fleet.admin


@pytest.fixture
def redis_url(on_fleet: Fleet) -> str:
    return on_fleet.redis_url


@pytest.fixture
def redis_client(redis_url: str) -> redis.Redis:
    return connect(redis_url)


@pytest.fixture
def producer_settings(redis_url: str) -> ProducerSettings:
    """The producer side of the fleet's configuration (as an app sharing the workers' environment has it)."""
    shared = {k.lower(): v for k, v in worker_env(redis_url, "http://unused").items()
              if k in {"BROKER_VISIBILITY_TIMEOUT_SECONDS", "TASK_TIME_LIMIT_SECONDS", "TASK_SOFT_TIME_LIMIT_SECONDS"}}
    return load_producer_settings(redis_url=redis_url, **shared)


@pytest.fixture
def client(producer_settings: ProducerSettings) -> CloseClient:
    return CloseClient(producer_settings)


@dataclass
class CliRun:
    returncode: int
    stdout: str
    stderr: str


def cli(redis_url: str, *args: str, stdin: str | None = None) -> CliRun:
    """The command line in this process (typer's CliRunner), with the exit statuses ``main`` gives."""
    result = CliRunner().invoke(cli_module.app, ["--redis-url", redis_url, *args], input=stdin)
    code, stderr = result.exit_code, result.stderr
    if result.exception is not None and not isinstance(result.exception, SystemExit):
        mapped = cli_module.exit_status_for(result.exception)
        if mapped is None:
            raise result.exception
        code, stderr = mapped[0], stderr + mapped[1] + "\n"
    return CliRun(code, result.stdout, stderr)
