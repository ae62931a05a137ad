"""worker/broker/prompt_reconnect.py: the worker's consumer and beat retry a lost Redis at most
BROKER_RECONNECT_MAX_SECONDS apart (kombu's default schedule grows to 30 s), with kombu's own retry loop against a
loopback port nobody listens on."""

from __future__ import annotations

import socket
from types import SimpleNamespace
from typing import Any
from unittest import mock

import pytest
from celery.beat import PersistentScheduler
from kombu import Connection
from kombu.exceptions import OperationalError
from kombu.utils.imports import symbol_by_name

from genesys_closer.worker.broker import prompt_reconnect
from genesys_closer.worker.broker.prompt_reconnect import PromptReconnectConsumer, PromptReconnectScheduler


def closed_port() -> int:
    with socket.socket() as probe:
        probe.bind(("127.0.0.1", 0))
        return int(probe.getsockname()[1])


def consumer(max_retries: int) -> PromptReconnectConsumer:
    """The consumer's reconnect step alone (Celery's ``ensure_connected`` reads these attributes only)."""
    conf = SimpleNamespace(broker_connection_retry_on_startup=True, broker_connection_retry=True,
                           broker_connection_max_retries=max_retries)
    instance = PromptReconnectConsumer.__new__(PromptReconnectConsumer)
    instance.app = SimpleNamespace(conf=conf)  # type: ignore[assignment]
    instance.first_connection_attempt = False
    instance.broker_connection_retry_attempt = 0
    return instance


@pytest.mark.parametrize(("cap", "waits"), [(5.0, [1, 2, 3, 4, 5, 5, 5]), (2.0, [1, 2, 2, 2, 2, 2, 2]),
                                            (0.5, [0.5] * 7)])
def test_waits_grow_by_a_second_to_the_cap(cap: float, waits: list[float]) -> None:
    slept: list[float] = []
    settings = SimpleNamespace(broker_reconnect_max_seconds=cap)
    conn = Connection(f"redis://127.0.0.1:{closed_port()}/0", connect_timeout=1)
    with mock.patch.object(prompt_reconnect, "get_worker_settings", return_value=settings), \
            mock.patch("kombu.utils.functional.sleep", side_effect=slept.append), \
            mock.patch("celery.worker.consumer.consumer.error") as logged, \
            pytest.raises(OperationalError):  # kombu re-raises the last connection error
        consumer(max_retries=len(waits)).ensure_connected(conn)
    assert sum(slept) == pytest.approx(sum(waits))  # kombu sleeps each wait in one-second steps
    said = [call.args[-1] for call in logged.call_args_list]  # Celery's own "Trying again in N seconds" lines
    assert len(said) == len(waits) and all("Trying again" in line for line in said)
    conn.release()


def scheduler(max_retries: int) -> PromptReconnectScheduler:
    """Beat's scheduler with only what its reconnect step reads: the app's retry count and its connection."""
    instance = PromptReconnectScheduler.__new__(PromptReconnectScheduler)
    instance.app = SimpleNamespace(conf=SimpleNamespace(broker_connection_max_retries=max_retries))
    instance.__dict__["connection"] = Connection(f"redis://127.0.0.1:{closed_port()}/0", connect_timeout=1)
    return instance


@pytest.mark.parametrize(("cap", "waits"), [(5.0, [1, 2, 3, 4, 5, 5, 5]), (2.0, [1, 2, 2, 2, 2, 2, 2])])
def test_beat_waits_grow_by_a_second_to_the_cap(cap: float, waits: list[float]) -> None:
    slept: list[float] = []
    settings = SimpleNamespace(broker_reconnect_max_seconds=cap)
    beat = scheduler(max_retries=len(waits))
    with mock.patch.object(prompt_reconnect, "get_worker_settings", return_value=settings), \
            mock.patch("kombu.utils.functional.sleep", side_effect=slept.append), \
            mock.patch.object(prompt_reconnect.log, "error") as logged, pytest.raises(OperationalError):
        beat._ensure_connected()
    assert sum(slept) == pytest.approx(sum(waits))
    said = [call.args[0] % call.args[1:] for call in logged.call_args_list]  # Celery's own line, as beat logs it
    assert len(said) == len(waits) and all(line.startswith("beat: Connection error") for line in said)
    assert [float(line.split("Trying again in ")[1].split()[0]) for line in said] == waits
    beat.connection.release()


def test_kombus_default_would_wait_up_to_30_seconds() -> None:
    """What the consumer did before: the same loop with kombu's defaults (2, 4, 6, ... up to 30 s)."""
    slept: list[float] = []
    conn = Connection(f"redis://127.0.0.1:{closed_port()}/0", connect_timeout=1)
    with mock.patch("kombu.utils.functional.sleep", side_effect=slept.append), pytest.raises(OperationalError):
        conn.ensure_connection(lambda *_: None, max_retries=16)
    assert sum(slept) == sum([2, 4, 6, 8, 10, 12, 14, 16, 18, 20, 22, 24, 26, 28, 30, 30])
    conn.release()


def test_the_worker_app_uses_it(monkeypatch: pytest.MonkeyPatch) -> None:
    from genesys_closer.worker import app as worker_app

    monkeypatch.setenv("GENESYS_CLIENT_ID", "x")
    monkeypatch.setenv("GENESYS_CLIENT_SECRET", "y")
    config: dict[str, Any] = worker_app._configuration()
    assert config["worker_consumer"].endswith(":PromptReconnectConsumer")
    scheduler_class = symbol_by_name(config["beat_scheduler"])
    assert scheduler_class is PromptReconnectScheduler and issubclass(scheduler_class, PersistentScheduler)
