"""Every message is bounded before it reaches the pool: one poison message must never stop a worker.

A Celery strategy (the function that turns a broker message into a request) wraps Celery's default one for each
genesys-closer task. Before anything is pickled for a pool process, it checks the raw size, the nesting depth of
the arguments, the keyword names, and the headers a caller may set: the retry count, the ETA
(``eta``/``countdown``), the expiry and the time limits. An offending message is acknowledged, recorded as
rejected (outcome ``invalid_request``, with the reason truncated to 1 kB) and never runs; the consumer goes on.

Headers can only narrow what the worker allows. An ETA further ahead than the safe window is refused (the broker
would redeliver the message while the first copy waits). An ``expires`` time is a narrowing (run no later than
this): it is kept, and a close that expires ends ``not_attempted`` (``worker.tasks`` records it when Celery
discards it). Time limits belong to the worker: a wider one would let a copy outlive the visibility timeout, a
narrower one cuts a close between its PATCH and its confirmation (and, kept by every retry, looped forever), so a
message that sets one other than the worker's own is refused.

Why a strategy: Celery sends each request to the prefork pool pickled, and a deeply nested argument made pickling
raise RecursionError inside the consumer, which stopped consuming for good (and the unacknowledged message then
killed every worker it was redelivered to).
"""

from __future__ import annotations

import logging
import time
from collections.abc import Callable
from dataclasses import dataclass, replace
from datetime import datetime
from typing import Any

from genesys_closer.shared.names import TASK_NAME
from genesys_closer.shared.outcomes import Outcome

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
    time_limit_seconds: float | None = None  # the worker's own limits for this task: a message may not change them
    soft_time_limit_seconds: float | None = None
    required: str | None = None  # the argument the task cannot run without (positional or by name)
    max_retries: int | None = None  # the worker's TASK_MAX_RETRIES: a message's retry count must lie in 0..this


# Celery's embed fields that would make a worker publish other tasks after this one: none of ours use them, and a
# message may not make a close start a sweep, a redrive or anything else.
WORKFLOW_FIELDS = ("callbacks", "errbacks", "chain", "chord")
CLOSE_BOUNDS = Bounds(required="conversation_id")
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


def _instant(value: Any) -> float:
    """An ISO-8601 header value as a timestamp (ValueError/TypeError when it is not one)."""
    if not isinstance(value, str):
        raise TypeError(type(value).__name__)
    return datetime.fromisoformat(value).timestamp()


def retries_problem(headers: dict[str, Any], bounds: Bounds) -> str | None:
    """Why the message's retry count cannot be ours, or None. The worker's own retries count 0, 1, ... up to
    TASK_MAX_RETRIES; a negative count would shrink every backoff to nothing (a hot retry loop against Genesys), a
    larger one or a non-integer falsifies the outcome record's ``attempts``."""
    retries = headers.get("retries")
    if retries is None:
        return None
    if not isinstance(retries, int) or isinstance(retries, bool) or retries < 0:
        return f"retry count {shorten(repr(retries), 40)} is not a count of retries"
    if bounds.max_retries is not None and retries > bounds.max_retries:
        return f"retry count {retries} beyond the worker's TASK_MAX_RETRIES ({bounds.max_retries})"
    return None


def header_problem(headers: dict[str, Any], bounds: Bounds, now: float) -> str | None:
    """Why the caller-set headers (retry count, ETA, expiry, time limits) must not run, or None."""
    retried = retries_problem(headers, bounds)
    if retried is not None:
        return retried
    eta, expires = headers.get("eta"), headers.get("expires")
    if eta is not None:
        try:
            wait = _instant(eta) - now
        except (TypeError, ValueError, OverflowError):
            return f"unreadable ETA {shorten(repr(eta), 80)}"
        if bounds.max_eta_seconds is not None and wait > bounds.max_eta_seconds:
            return (f"ETA {wait:.0f} s ahead exceeds the safe window of {bounds.max_eta_seconds:.0f} s (the broker "
                    "would redeliver it while it waits): send it later instead")
    if expires is not None:
        try:
            _instant(expires)
        except (TypeError, ValueError, OverflowError):
            return f"unreadable expires {shorten(repr(expires), 80)}"
    limits = headers.get("timelimit")
    if limits is None:
        return None
    if not isinstance(limits, list | tuple) or len(limits) != 2:
        return f"unreadable time limits {shorten(repr(limits), 80)}"
    for name, asked, own in (("time_limit", limits[0], bounds.time_limit_seconds),
                             ("soft_time_limit", limits[1], bounds.soft_time_limit_seconds)):
        if asked is None or (isinstance(asked, int | float) and not isinstance(asked, bool) and asked == own):
            continue
        shown = shorten(repr(asked), 40)
        return (f"{name} {shown} set by the message: time limits are the worker's own "
                f"({own if own is not None else 'none'} s; TASK_TIME_LIMIT_SECONDS / TASK_SOFT_TIME_LIMIT_SECONDS)")
    return None


def problem_with(body_size: int, payload: Any, headers: dict[str, Any], bounds: Bounds, now: float) -> str | None:
    """Why this message must not run, or None. ``payload`` is Celery protocol 2's ``[args, kwargs, embed]``."""
    if body_size > bounds.max_body_bytes:
        return f"message body of {body_size} bytes exceeds {bounds.max_body_bytes}"
    if not isinstance(payload, list | tuple) or len(payload) != 3:
        return "message body is not [args, kwargs, embed]"
    args, kwargs, embed = payload
    if not isinstance(args, list | tuple) or not isinstance(kwargs, dict):
        return "args must be a list and kwargs an object"
    if len(args) > bounds.max_args:
        return f"{len(args)} positional arguments (at most {bounds.max_args})"
    if bounds.required is not None and not args and bounds.required not in kwargs:
        return f"no {bounds.required} (positional or by name)"
    if isinstance(embed, dict) and any(embed.get(name) for name in WORKFLOW_FIELDS):
        return "callbacks, errbacks, chains and chords are not accepted"
    if depth_of([args, kwargs], bounds.max_depth) > bounds.max_depth:
        return f"arguments nested deeper than {bounds.max_depth} levels"
    if len(kwargs) > bounds.max_kwargs:
        return f"{len(kwargs)} keyword arguments (at most {bounds.max_kwargs})"
    for name in kwargs:
        if not isinstance(name, str) or len(name) > bounds.max_kwarg_name:
            return f"keyword name {shorten(repr(name), 80)} longer than {bounds.max_kwarg_name} characters"
    return header_problem(headers, bounds, now)


def expiry_problem(headers: dict[str, Any], now: float) -> str | None:
    """Why a message whose headers passed ``header_problem`` can never run before it expires, or None: its
    ``expires`` has passed, or comes before its ETA. (Expiry later, on a retry, is Celery's: see ``worker.tasks``.)"""
    expires = headers.get("expires")
    if expires is None:
        return None
    deadline = _instant(expires)
    eta = headers.get("eta")
    if deadline <= now:
        return f"expired before it ran (the message's expires was {shorten(str(expires), 40)})"
    if eta is not None and deadline <= _instant(eta):
        return (f"expired before it ran (the message's expires, {shorten(str(expires), 40)}, comes before its ETA "
                f"{shorten(str(eta), 40)})")
    return None


def bounded_strategy(task: Any, app: Any, consumer: Any, **options: Any) -> Callable[..., Any]:
    """Celery's default strategy for ``task``, behind the bounds check."""
    from celery.worker.strategy import default

    from genesys_closer.worker.factory import message_limits, record_rejected

    handler = default(task, app, consumer, **options)
    bounds = replace(message_limits(task.name), time_limit_seconds=task.time_limit,
                     soft_time_limit_seconds=task.soft_time_limit)
    ack_errors = consumer.connection_errors  # a lost ack is logged; the message stays in kombu's unacked hash

    def handle(message: Any, body: Any, ack: Any, reject: Any, callbacks: Any, **kwargs: Any) -> Any:
        try:
            payload = message.payload
            raw = message.body
            size = len(raw) if isinstance(raw, bytes | str) else 0
            headers = message.headers if isinstance(message.headers, dict) else {}
            now = time.time()
            problem = problem_with(size, payload, headers, bounds, now)
            expired = expiry_problem(headers, now) if problem is None and task.name == TASK_NAME else None
        except (RecursionError, ValueError, TypeError, AttributeError, OverflowError) as exc:
            payload, problem, expired = None, f"unreadable message ({type(exc).__name__})", None
        if problem is None and expired is None:
            return handler(message, body, ack, reject, callbacks, **kwargs)
        task_id = str((message.headers or {}).get("id", ""))[:100]
        log.warning("rejected message for %s (task %s): %s", task.name, task_id, problem or expired)
        try:
            if expired is not None:  # a close that can never run in time: not attempted, with the reason
                record_rejected(task.name, task_id, payload, expired, Outcome.NOT_ATTEMPTED, app=app)
            else:
                record_rejected(task.name, task_id, payload if task.name == TASK_NAME else None, str(problem),
                                app=app)
        finally:
            ack(log, ack_errors)
        return None

    return handle
