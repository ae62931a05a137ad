"""worker/broker/event_batches.py: the worker's consumer flushes buffered task events once per EVENT_FLUSH_SECONDS
(Celery's flushes at every loop turn), and before a warm shutdown."""

from __future__ import annotations

from typing import Any

import pytest

from genesys_closer.worker.broker import event_batches
from genesys_closer.worker.broker.event_batches import EVENT_FLUSH_SECONDS, EventBatches
from genesys_closer.worker.broker.prompt_reconnect import PromptReconnectConsumer


class Hub:
    def __init__(self) -> None:
        self.later: list[tuple[float, Any]] = []

    def call_later(self, delay: float, callback: Any) -> None:
        self.later.append((delay, callback))


def consumer(hub: Hub | None) -> EventBatches:
    instance = EventBatches.__new__(EventBatches)  # only what the two methods read
    instance.hub = hub
    instance.flushed = 0

    def flush() -> None:
        instance.flushed += 1

    instance._flush_events = flush
    return instance


def test_events_buffered_within_the_interval_share_one_flush(monkeypatch: pytest.MonkeyPatch) -> None:
    now = [100.0]
    monkeypatch.setattr(event_batches.time, "monotonic", lambda: now[0])
    hub = Hub()
    subject = consumer(hub)
    for _ in range(50):  # a busy worker buffers many events within one interval
        subject.on_send_event_buffered()
        now[0] += EVENT_FLUSH_SECONDS / 100
    assert [delay for delay, _ in hub.later] == [EVENT_FLUSH_SECONDS]
    now[0] += EVENT_FLUSH_SECONDS  # the interval has passed (its timer ran, or the hub dropped it): a new flush
    subject.on_send_event_buffered()
    assert len(hub.later) == 2
    hub.later[0][1]()
    assert subject.flushed == 1


def test_without_an_event_loop_nothing_is_scheduled() -> None:
    subject = consumer(None)
    subject.on_send_event_buffered()
    assert subject.flushed == 0


def test_a_warm_shutdown_sends_what_is_buffered_first(monkeypatch: pytest.MonkeyPatch) -> None:
    subject = consumer(Hub())
    order: list[str] = []
    subject._flush_events = lambda: order.append("flush")
    monkeypatch.setattr(event_batches.Consumer, "shutdown", lambda self: order.append("shutdown"))
    subject.shutdown()
    assert order == ["flush", "shutdown"]

    def broken() -> None:
        raise ConnectionError("the broker is gone")

    subject._flush_events = broken  # a broken connection: the buffer is lost, the shutdown goes on
    order.clear()
    subject.shutdown()
    assert order == ["shutdown"]


def test_the_worker_consumer_batches_its_events() -> None:
    assert issubclass(PromptReconnectConsumer, EventBatches)
