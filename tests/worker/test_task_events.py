"""Task events for Flower when the broker is unreachable: they are only what Flower shows, so a failure to send one
is logged and changes nothing else (the close goes on waiting, the pump goes on recording outcomes)."""

from __future__ import annotations

import logging
from typing import Any

import pytest
from celery import Celery

from genesys_closer.worker.ops.task_events import OutcomeEvents, report_waiting
from tests.services import free_port


def unreachable_app() -> Celery:
    """A Celery app whose broker is a loopback port nobody listens on."""
    app = Celery("unreachable", set_as_current=False)
    app.conf.broker_url = f"redis://127.0.0.1:{free_port()}/0"
    app.conf.broker_transport_options = {"socket_connect_timeout": 1, "socket_timeout": 1}
    app.conf.broker_connection_retry = False
    app.conf.broker_connection_max_retries = 0
    app.conf.broker_connection_timeout = 0.5
    return app


class RunningTask:
    """What ``report_waiting`` uses of a running close task: its app and ``send_event`` (Celery's own)."""

    def __init__(self, app: Celery) -> None:
        self.app = app
        self.request = type("Request", (), {"hostname": "celery@test", "id": "task-1"})()

    def send_event(self, type_: str, retry: bool = True, **fields: Any) -> Any:
        with self.app.events.default_dispatcher(hostname=self.request.hostname) as dispatcher:
            return dispatcher.send(type_, uuid=self.request.id, retry=retry, **fields)


def test_an_event_that_cannot_be_sent_is_logged_and_nothing_else(caplog: pytest.LogCaptureFixture) -> None:
    app = unreachable_app()
    record = {"conversation_id": "c", "batch_id": "b", "outcome": "closed"}
    with caplog.at_level(logging.WARNING, logger="genesys_closer.worker"):
        report_waiting(RunningTask(app), {"conversation_id": "c", "batch_id": "b", "waiting_for": "batched confirm"})
        OutcomeEvents(app, hostname=lambda: "celery@test")([("task-1", record), ("task-2", record)])
    messages = [r.getMessage() for r in caplog.records]
    assert any("task-waiting" in m for m in messages)
    assert any("could not send 2 task-succeeded event(s)" in m for m in messages)


def test_nothing_to_report_touches_no_broker() -> None:
    OutcomeEvents(unreachable_app(), hostname=lambda: None)([])  # no connection is even tried
