"""Which close tasks the broker still holds: queued in a list, or delivered to a worker and not yet acknowledged.

Reads kombu's Redis layout (kombu 5): each queue is a list of message envelopes (JSON, the Celery protocol-2 body
base64-encoded inside), priority steps live in lists named ``queue + "\\x06\\x16" + step``, and delivered but
unacknowledged messages are kept in the ``unacked`` hash as ``[envelope, exchange, routing_key]``. Only close tasks
are looked at; anything unreadable is skipped (it is not ours to judge here).

Used before re-driving work, so that what the broker will still deliver is not published twice.
"""

from __future__ import annotations

import base64
import json
from collections.abc import Iterable, Iterator
from dataclasses import dataclass
from typing import Any

import redis

from genesys_closer.config.orgs import DEFAULT_ORG
from genesys_closer.shared.names import QUEUES, TASK_NAME

PRIORITY_SEPARATOR = "\x06\x16"
UNACKED_HASH = "unacked"
UNACKED_INDEX = "unacked_index"  # delivery time of each unacknowledged message, by delivery tag
CHUNK = 1000


@dataclass(frozen=True)
class HeldClose:
    task_id: str
    conversation_id: str
    batch_id: str | None
    org: str = DEFAULT_ORG  # the org its message names (a batch id is unique only within its org)


def _close_in(envelope: Any) -> HeldClose | None:
    if not isinstance(envelope, dict):
        return None
    headers = envelope.get("headers")
    if not isinstance(headers, dict) or headers.get("task") != TASK_NAME:
        return None
    try:
        body = envelope.get("body", "")
        if (envelope.get("properties") or {}).get("body_encoding") == "base64":
            body = base64.b64decode(body)
        args, kwargs, _ = json.loads(body)
        conversation_id = args[0]
        batch_id = kwargs.get("batch_id")
        org = kwargs.get("org", DEFAULT_ORG)
    except (ValueError, TypeError, IndexError, KeyError, AttributeError):
        return None
    if not isinstance(conversation_id, str):
        return None
    return HeldClose(str(headers.get("id")), conversation_id, batch_id if isinstance(batch_id, str) else None,
                     org if isinstance(org, str) else DEFAULT_ORG)


def _queue_lists(client: redis.Redis, queues: Iterable[str]) -> Iterator[str]:
    for queue in queues:
        yield queue
        for key in client.scan_iter(f"{queue}{PRIORITY_SEPARATOR}*", count=100):
            yield key.decode() if isinstance(key, bytes) else str(key)


def held_closes(client: redis.Redis, queues: Iterable[str] = QUEUES) -> Iterator[HeldClose]:
    """Every close task the broker still holds (queued or unacknowledged), read in chunks."""
    for key in _queue_lists(client, queues):
        start = 0
        while True:
            chunk = client.lrange(key, start, start + CHUNK - 1)
            if not chunk:
                break
            start += len(chunk)
            for raw in chunk:
                held = _parse(raw)
                if held is not None:
                    yield held
    for _, raw in client.hscan_iter(UNACKED_HASH, count=CHUNK):
        try:
            envelope = json.loads(raw)[0]
        except (ValueError, TypeError, IndexError, KeyError):
            continue
        held = _close_in(envelope)
        if held is not None:
            yield held


def unacked_task_id(client: redis.Redis, delivery_tag: str) -> str | None:
    """The task id of one unacknowledged delivery, or None when it is gone or unreadable."""
    raw = client.hget(UNACKED_HASH, delivery_tag)
    if raw is None:
        return None
    try:
        headers = json.loads(raw)[0].get("headers") or {}
    except (ValueError, TypeError, IndexError, KeyError, AttributeError):
        return None
    return str(headers.get("id")) if headers.get("id") else None


def _parse(raw: bytes | str) -> HeldClose | None:
    try:
        return _close_in(json.loads(raw))
    except ValueError:
        return None
