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
the waiting event takes the place of the ``task-succeeded`` a waiting task sent before, and the pump's event is one
pub/sub message per close it confirms (measured: docs/benchmarks.md, section 10).
"""

from __future__ import annotations

import logging
from collections.abc import Callable, Sequence
from typing import Any

from celery import Celery, Task, current_task
from celery.utils.saferepr import saferepr

log = logging.getLogger("genesys_closer.worker")
WAITING_EVENT = "task-waiting"
WAITING_STATE = "WAITING"  # Flower's state for it: celery.events.state names a custom event's state by its type
SUCCEEDED_EVENT = "task-succeeded"
Ended = tuple[str, dict[str, Any]]  # (the id of the close task that waited, the outcome record)
SHOWN_FIRST = ("outcome", "waiting_for", "confirmed_by")  # what Flower's result column shows before it cuts


def shown(record: dict[str, Any]) -> dict[str, Any]:
    """``record`` with what a glance needs first (Flower cuts a long result to its column): the same keys and values,
    so whoever reads the result as data (the result backend, ``CloseResult.from_dict``) reads the same record."""
    return {**{key: record[key] for key in SHOWN_FIRST if key in record}, **record}


def _result(record: dict[str, Any]) -> str:
    """A result as the worker shows one in its own events (``saferepr``, at most ``Task.resultrepr_maxsize``)."""
    return str(saferepr(shown(record), Task.resultrepr_maxsize))


def report_waiting(task: Any, record: dict[str, Any]) -> None:
    """The running close ``task`` leaves its item waiting for a batched read (``record`` says which)."""
    try:
        task.send_event(WAITING_EVENT, retry=False, result=_result(record))
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
    recorded (the pump's ``report_ended``), all over one broker connection."""

    def __init__(self, app: Celery, hostname: Callable[[], str | None] = _running_hostname) -> None:
        self.app = app
        self.hostname = hostname

    def __call__(self, ended: Sequence[Ended]) -> None:
        if not ended:
            return
        try:
            with self.app.events.default_dispatcher(hostname=self.hostname()) as dispatcher:
                for task_id, record in ended:
                    dispatcher.send(SUCCEEDED_EVENT, uuid=task_id, retry=False, result=_result(record))
        except Exception:  # the broker's errors: the outcomes are recorded, only Flower misses their end
            log.warning("could not send %d task-succeeded event(s) for outcomes a batched check recorded (Flower "
                        "keeps showing those tasks WAITING)", len(ended), exc_info=True)
