"""End-to-end fixtures: the emulator over loopback HTTP, a real Redis, real `celery worker` processes."""

from __future__ import annotations

from collections.abc import Callable, Iterator
from pathlib import Path
from typing import Any

import pytest

from genesys_closer.config import ProducerSettings, load_producer_settings
from genesys_closer.emulator import EmulatorServer
from genesys_closer.producer.api import CloseClient
from tests.services import CeleryWorker, start_workers, worker_env

StartWorkers = Callable[..., list[CeleryWorker]]


@pytest.fixture
def start(redis_url: str, emulator: EmulatorServer, logdir: Path) -> Iterator[StartWorkers]:
    """Start N real workers against this test's Redis and emulator; stopped at teardown."""
    started: list[CeleryWorker] = []

    def launch(count: int = 1, concurrency: int = 4, queues: str | None = None, loglevel: str = "INFO",
               **env: Any) -> list[CeleryWorker]:
        workers = start_workers(count, worker_env(redis_url, emulator.base_url, **env), logdir, concurrency, queues,
                                loglevel=loglevel)
        started.extend(workers)
        return workers

    yield launch
    for worker in started:
        worker.kill()  # the test has asserted what it needed; a warm shutdown would only cost time


@pytest.fixture
def producer_settings(redis_url: str) -> ProducerSettings:
    return load_producer_settings(redis_url=redis_url)


@pytest.fixture
def client(producer_settings: ProducerSettings) -> CloseClient:
    return CloseClient(producer_settings)
