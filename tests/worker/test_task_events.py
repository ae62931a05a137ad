"""Task events for Flower when the broker is unreachable: they are only what Flower shows, so a failure to send one
is logged and changes nothing else (the close goes on waiting, the pump goes on recording outcomes)."""

from __future__ import annotations

import logging
from typing import Any

import pytest
from celery import Celery

from genesys_closer.worker.ops.task_events import EVENTS_PER_MESSAGE, OutcomeEvents, process_events, report_waiting
from tests.services import RedisServer, free_port


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
    """What ``report_waiting`` uses of a running close task: its app and its request (id, node name); and
    ``send_event`` as Celery's own, for what builds a dispatcher per event."""

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


def redis_app(url: str) -> Celery:
    app = Celery("events", set_as_current=False)
    app.conf.broker_url = url
    app.conf.broker_transport_options = {"socket_connect_timeout": 1, "socket_timeout": 2}
    app.conf.broker_connection_retry = False
    app.conf.broker_connection_max_retries = 0
    return app


class Listener:
    """Every event published on the events exchange of a real Redis (kombu's fanout is Redis pub/sub)."""

    def __init__(self, url: str) -> None:
        import redis

        self.pubsub = redis.Redis.from_url(url).pubsub()
        self.pubsub.psubscribe("*celeryev*")
        self.pubsub.get_message(timeout=1)  # the subscription's confirmation
        self.messages = 0

    def events(self, count: int) -> list[dict[str, Any]]:
        import base64
        import json

        from tests.waiting import wait_until

        seen: list[dict[str, Any]] = []

        def read() -> bool:
            message = self.pubsub.get_message(timeout=0.2)
            if message and message["type"] == "pmessage":
                body = json.loads(base64.b64decode(json.loads(message["data"])["body"]))
                seen.extend(body if isinstance(body, list) else [body])
                self.messages += 1
            return len(seen) >= count

        wait_until(read, timeout=10, message=f"{count} events")
        return seen


def test_events_reuse_one_connection_per_process_and_reconnect_after_the_broker_comes_back(
        private_redis: RedisServer, monkeypatch: pytest.MonkeyPatch, caplog: pytest.LogCaptureFixture) -> None:
    import redis

    private_redis.wait_ready()
    app = redis_app(private_redis.url)
    events = process_events(app)
    listener = Listener(private_redis.url)
    report_waiting(RunningTask(app), {"conversation_id": "c", "waiting_for": "batched confirm"})
    OutcomeEvents(app, hostname=lambda: "celery@test")([("task-1", {"outcome": "closed"})])
    seen = listener.events(2)
    assert [(e["type"], e["uuid"], e["hostname"]) for e in seen] == [("task-waiting", "task-1", "celery@test"),
                                                                   ("task-succeeded", "task-1", "celery@test")]
    first = events._held
    report_waiting(RunningTask(app), {"conversation_id": "c", "waiting_for": "batched confirm"})
    assert first is not None and events._held is first  # the same dispatcher and connection: nothing built again
    assert len(listener.events(1)) == 1

    listener.messages = 0  # a pump run's outcomes: one message for up to EVENTS_PER_MESSAGE of them
    OutcomeEvents(app, hostname=lambda: "celery@test")([(f"task-{n}", {"outcome": "closed"})
                                                       for n in range(EVENTS_PER_MESSAGE + 5)])
    grouped = listener.events(EVENTS_PER_MESSAGE + 5)
    assert [e["uuid"] for e in grouped] == [f"task-{n}" for n in range(EVENTS_PER_MESSAGE + 5)]
    assert {e["type"] for e in grouped} == {"task-succeeded"} and listener.messages == 2

    private_redis.restart()  # the kept connection is gone: at most the event sent into it is lost (logged)
    private_redis.wait_ready()
    listener = Listener(private_redis.url)
    with caplog.at_level(logging.WARNING, logger="genesys_closer.worker"):
        report_waiting(RunningTask(app), {"conversation_id": "c", "waiting_for": "batched confirm"})
        report_waiting(RunningTask(app), {"conversation_id": "c", "waiting_for": "batched confirm"})
    assert sum("task-waiting" in r.getMessage() for r in caplog.records) <= 1
    assert listener.events(1)[0]["type"] == "task-waiting"

    broken = events._held
    assert broken is not None

    def fail(*args: Any, **kwargs: Any) -> None:
        raise redis.ConnectionError("Connection closed by server.")

    monkeypatch.setattr(broken.dispatcher, "send", fail)
    caplog.clear()
    with caplog.at_level(logging.WARNING, logger="genesys_closer.worker"):
        report_waiting(RunningTask(app), {"conversation_id": "c", "waiting_for": "batched confirm"})
    assert [r.getMessage() for r in caplog.records] == [
        "could not send the task-waiting event (Flower shows the task as started)"]
    assert events._held is None  # dropped with its connection: the next event connects again
    report_waiting(RunningTask(app), {"conversation_id": "c", "waiting_for": "after the failure"})
    assert events._held is not None and events._held is not broken
    assert "after the failure" in listener.events(2)[-1]["result"]

    monkeypatch.setattr("os.getpid", lambda: -1)  # as a forked child: the parent's dispatcher is never used
    kept = events._held
    report_waiting(RunningTask(app), {"conversation_id": "c", "waiting_for": "batched confirm"})
    assert events._held is not kept and events._held is not None and events._held.pid == -1
