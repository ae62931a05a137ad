"""Every message is bounded before it reaches the pool: one poison message must never stop a worker.

A Celery strategy (the function that turns a broker message into a request) wraps Celery's default one for each
genesys-closer task. Before anything is pickled for a pool process, it checks the raw size, the nesting depth of
the arguments, the keyword names and the ETA. An offending message is acknowledged, recorded as rejected
(outcome ``invalid_request``, with the reason truncated to 1 kB) and never runs; the consumer goes on.

Why a strategy: Celery sends each request to the prefork pool pickled, and a deeply nested argument made pickling
raise RecursionError inside the consumer, which stopped consuming for good (and the unacknowledged message then
killed every worker it was redelivered to).
"""

from __future__ import annotations

import logging
import time
from collections.abc import Callable
from dataclasses import dataclass
from datetime import datetime
from typing import Any

from genesys_closer.worker.names import TASK_NAME

log = logging.getLogger("genesys_closer.worker")
MAX_ECHO = 1000


@dataclass(frozen=True)
class Bounds:
    max_body_bytes: int = 16 * 1024
    max_depth: int = 8
    max_kwargs: int = 16
    max_kwarg_name: int = 64
    max_args: int = 1
    max_eta_seconds: float | None = None  # beyond this, a retry copy would be redelivered while the first waits


CLOSE_BOUNDS = Bounds()
SWEEP_BOUNDS = Bounds(max_body_bytes=64 * 1024, max_args=0)


def depth_of(value: Any, limit: int) -> int:
    """Nesting depth of lists/dicts, counted without recursion and stopping once past ``limit``."""
    deepest = 0
    stack: list[tuple[Any, int]] = [(value, 0)]
    while stack:
        item, depth = stack.pop()
        if depth > deepest:
            deepest = depth
            if deepest > limit:
                return deepest
        if isinstance(item, dict):
            stack.extend((child, depth + 1) for child in item.values())
        elif isinstance(item, list | tuple):
            stack.extend((child, depth + 1) for child in item)
    return deepest


def shorten(text: str, limit: int = MAX_ECHO) -> str:
    return text if len(text) <= limit else text[: limit - 3] + "..."


def problem_with(body_size: int, payload: Any, eta: str | None, bounds: Bounds, now: float) -> str | None:
    """Why this message must not run, or None. ``payload`` is Celery protocol 2's ``[args, kwargs, embed]``."""
    if body_size > bounds.max_body_bytes:
        return f"message body of {body_size} bytes exceeds {bounds.max_body_bytes}"
    if not isinstance(payload, list | tuple) or len(payload) != 3:
        return "message body is not [args, kwargs, embed]"
    args, kwargs, _ = payload
    if not isinstance(args, list | tuple) or not isinstance(kwargs, dict):
        return "args must be a list and kwargs an object"
    if len(args) > bounds.max_args:
        return f"{len(args)} positional arguments (at most {bounds.max_args})"
    if depth_of([args, kwargs], bounds.max_depth) > bounds.max_depth:
        return f"arguments nested deeper than {bounds.max_depth} levels"
    if len(kwargs) > bounds.max_kwargs:
        return f"{len(kwargs)} keyword arguments (at most {bounds.max_kwargs})"
    for name in kwargs:
        if not isinstance(name, str) or len(name) > bounds.max_kwarg_name:
            return f"keyword name {shorten(repr(name), 80)} longer than {bounds.max_kwarg_name} characters"
    if eta and bounds.max_eta_seconds is not None:
        try:
            wait = datetime.fromisoformat(eta).timestamp() - now
        except (TypeError, ValueError):
            return f"unreadable ETA {shorten(repr(eta), 80)}"
        if wait > bounds.max_eta_seconds:
            return (f"ETA {wait:.0f} s ahead exceeds the safe window of {bounds.max_eta_seconds:.0f} s (the broker "
                    "would redeliver it while it waits): send it later instead")
    return None


def bounded_strategy(task: Any, app: Any, consumer: Any, **options: Any) -> Callable[..., Any]:
    """Celery's default strategy for ``task``, behind the bounds check."""
    from celery.worker.strategy import default

    from genesys_closer.worker.factory import message_limits, record_rejected

    handler = default(task, app, consumer, **options)
    bounds = message_limits(task.name)
    ack_errors = consumer.connection_errors  # a lost ack is logged; the message stays in kombu's unacked hash

    def handle(message: Any, body: Any, ack: Any, reject: Any, callbacks: Any, **kwargs: Any) -> Any:
        try:
            payload = message.payload
            raw = message.body
            size = len(raw) if isinstance(raw, bytes | str) else 0
            headers = message.headers or {}
            problem = problem_with(size, payload, headers.get("eta"), bounds, time.time())
        except (RecursionError, ValueError, TypeError, AttributeError) as exc:
            payload, problem = None, f"unreadable message ({type(exc).__name__})"
        if problem is None:
            return handler(message, body, ack, reject, callbacks, **kwargs)
        task_id = str((message.headers or {}).get("id", ""))[:100]
        log.warning("rejected message for %s (task %s): %s", task.name, task_id, problem)
        try:
            record_rejected(task.name, task_id, payload if task.name == TASK_NAME else None, problem)
        finally:
            ack(log, ack_errors)
        return None

    return handle
