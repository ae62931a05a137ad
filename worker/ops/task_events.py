"""What Flower shows of a batch item that waits for a batched read: task events that tell the truth.

Flower knows a task only from the events the workers send. A close task whose item goes to wait for a batched
pre-check or confirmation read has closed nothing yet, so it does not end ``SUCCESS``:

- it sends ``task-waiting`` (Flower shows the custom state ``WAITING``, its result names the read the item waits
  for) and raises Celery's ``Ignore``: the worker acknowledges the message and sends no ``task-succeeded``;
- when the batched-check pump records the item's outcome, it sends ``task-succeeded`` for the close task that
  waited, with the outcome record as its result (``OutcomeEvents``). That task is the conversation's last: Flower
  shows ``SUCCESS`` and the outcome. An item the pump hands to a close task instead ends with that task's result.

So ``SUCCESS`` on a close task always means its close ended and the result is its outcome record. Events are only
what Flower shows, never what the product relies on (outcomes live in Redis): an event that cannot be sent (the
broker is unreachable) is logged and nothing else changes. Per close this costs no API call and no broker message:
the waiting event takes the place of the ``task-succeeded`` a waiting task sent before, and the pump's events go
out grouped, one pub/sub message for up to EVENTS_PER_MESSAGE closes it confirms (measured: docs/benchmarks.md,
section 10).

Both go through one event dispatcher per process (``ProcessEvents``), kept between events. Celery's
``Task.send_event`` builds a dispatcher (a producer, the event exchange, a pooled connection) for every event, which
cost a pool process about as much as the event's own publish (the two: 13 % of its CPU in a batch close, a py-spy
profile, 2026-12-01). A dispatcher that fails to publish is dropped with its connection, and the next event builds
a new one: a broker outage costs the events sent during it, and nothing after it.
"""

from __future__ import annotations

import functools
import logging
import os
import threading
from collections.abc import Callable, Sequence
from dataclasses import dataclass
from typing import Any

from celery import Celery, Task, current_task
from celery.events import EventDispatcher
from celery.utils.saferepr import saferepr
from kombu.connection import Connection

log = logging.getLogger("genesys_closer.worker")
WAITING_EVENT = "task-waiting"
WAITING_STATE = "WAITING"  # Flower's state for it: celery.events.state names a custom event's state by its type
SUCCEEDED_EVENT = "task-succeeded"
Ended = tuple[str, dict[str, Any]]  # (the id of the close task that waited, the outcome record)
EVENTS_PER_MESSAGE = 100  # task events in one grouped message (about 40 KB of JSON at most)
SHOWN_FIRST = ("outcome", "waiting_for", "confirmed_by")  # what Flower's result column shows before it cuts


def shown(record: dict[str, Any]) -> dict[str, Any]:
    """``record`` with what a glance needs first (Flower cuts a long result to its column): the same keys and values,
    so whoever reads the result as data (the result backend, ``CloseResult.from_dict``) reads the same record."""
    return {**{key: record[key] for key in SHOWN_FIRST if key in record}, **record}


def _result(record: dict[str, Any]) -> str:
    """A result as the worker shows one in its own events (``saferepr``, at most ``Task.resultrepr_maxsize``)."""
    return str(saferepr(shown(record), Task.resultrepr_maxsize))


@dataclass(frozen=True)
class _Held:
    pid: int
    hostname: str | None
    connection: Connection
    dispatcher: EventDispatcher


class ProcessEvents:
    """Sends task events through one dispatcher of this process's own, built on the first event and kept: a pool
    process sends every event with the same node name (its worker's). A dispatcher inherited through a fork is never
    used (its socket is the parent's), and one that failed is dropped with its connection, so the next event connects
    again. The events of one ``send`` go out together: up to EVENTS_PER_MESSAGE task events in one message (Celery's
    ``task.multi``, which Flower reads as the events in it), so a pump run that records 100 outcomes publishes once,
    not 100 times."""

    def __init__(self, app: Celery) -> None:
        self.app = app
        self._held: _Held | None = None
        self._lock = threading.Lock()

    def send(self, hostname: str | None, events: Sequence[tuple[str, dict[str, Any]]]) -> None:
        """Publish ``events`` (type, fields) in order, without retrying; raises what the broker raised."""
        with self._lock:
            held = self._current(hostname)
            try:
                for type_, fields in events:  # buffered (task events), or sent at once (any other)
                    held.dispatcher.send(type_, retry=False, **fields)
                held.dispatcher.flush()  # the buffered ones, as one message per EVENTS_PER_MESSAGE
            except BaseException:  # a half-sent publish (a broker error, a soft time limit) leaves nothing reusable
                self._drop()
                raise

    def _current(self, hostname: str | None) -> _Held:
        held = self._held
        if held is not None and held.pid == os.getpid():
            if held.hostname == hostname:
                return held
            self._drop()  # this process's, for another node name
        connection = self.app.connection_for_write()
        try:
            dispatcher = self.app.events.Dispatcher(connection, hostname=hostname, enabled=True,
                                                    buffer_while_offline=False, buffer_group=["task"],
                                                    buffer_limit=EVENTS_PER_MESSAGE)
        except BaseException:
            connection.release()
            raise
        self._held = _Held(os.getpid(), hostname, connection, dispatcher)
        return self._held

    def _drop(self) -> None:
        held, self._held = self._held, None
        if held is None or held.pid != os.getpid():
            return
        for close in (held.dispatcher.close, held.connection.release):
            try:
                close()
            except Exception:  # already broken: closing it is all that was left to do
                log.debug("closing a failed event connection", exc_info=True)


@functools.cache
def process_events(app: Celery) -> ProcessEvents:
    """The ``ProcessEvents`` of ``app`` (a worker process has one app; its pool processes inherit it unused)."""
    return ProcessEvents(app)


def report_waiting(task: Any, record: dict[str, Any]) -> None:
    """The running close ``task`` leaves its item waiting for a batched read (``record`` says which)."""
    request = task.request
    try:
        process_events(task.app).send(request.hostname, [(WAITING_EVENT, {"uuid": request.id,
                                                                          "result": _result(record)})])
    except Exception:  # the broker's errors (kombu, redis): an event is only what Flower shows
        log.warning("could not send the task-waiting event (Flower shows the task as started)", exc_info=True,
                    extra={"conversation_id": record.get("conversation_id"), "batch_id": record.get("batch_id")})


def _running_hostname() -> str | None:
    """The worker node name of the task running in this process (the pump's): events name their sender."""
    request = getattr(current_task, "request", None)
    hostname = getattr(request, "hostname", None)
    return hostname if isinstance(hostname, str) else None


class OutcomeEvents:
    """Sends ``task-succeeded`` with the outcome record for close tasks whose items' outcomes a batched check
    recorded (the pump's ``report_ended``), through the process's dispatcher."""

    def __init__(self, app: Celery, hostname: Callable[[], str | None] = _running_hostname) -> None:
        self.app = app
        self.hostname = hostname

    def __call__(self, ended: Sequence[Ended]) -> None:
        if not ended:
            return
        try:
            process_events(self.app).send(self.hostname(), [(SUCCEEDED_EVENT, {"uuid": task_id,
                                                                               "result": _result(record)})
                                                            for task_id, record in ended])
        except Exception:  # the broker's errors: the outcomes are recorded, only Flower misses their end
            log.warning("could not send %d task-succeeded event(s) for outcomes a batched check recorded (Flower "
                        "keeps showing those tasks WAITING)", len(ended), exc_info=True)
