"""Pure decisions: what a response means, whether to retry, how long to wait, whether a conversation is closed.

Nothing here does I/O, reads a clock or draws randomness of its own: time and randomness are arguments.
"""

from __future__ import annotations

import email.utils
import math
import random
from collections.abc import Callable, Iterable, Mapping
from dataclasses import dataclass
from typing import Any

from worker.errors import (
    AuthenticationFailed,
    BadRequest,
    Forbidden,
    GenesysError,
    NotFound,
    RateLimited,
    ServerError,
)

CLOSED_PARTICIPANT_STATES = frozenset({"disconnected", "terminated"})
WEB_MESSAGING = "webmessaging"
MAX_RETRY_AFTER_SECONDS = 3600.0


def parse_retry_after(value: str | None, now_epoch: float) -> float | None:
    """``Retry-After`` as seconds from now: delta-seconds or an HTTP-date; None when absent or unreadable."""
    if value is None:
        return None
    text = value.strip()
    if not text:
        return None
    try:
        seconds = float(text)
    except ValueError:
        try:
            moment = email.utils.parsedate_to_datetime(text)
        except (TypeError, ValueError):
            return None
        if moment is None:
            return None
        seconds = moment.timestamp() - now_epoch
    if math.isnan(seconds) or math.isinf(seconds):
        return None
    return min(max(seconds, 0.0), MAX_RETRY_AFTER_SECONDS)


def error_for_status(status: int) -> type[GenesysError]:
    """The error class for a non-2xx status: 429 and 5xx are retryable, every other status is permanent."""
    if status == 429:
        return RateLimited
    if status >= 500:
        return ServerError
    if status == 401:
        return AuthenticationFailed
    if status == 403:
        return Forbidden
    if status == 404:
        return NotFound
    return BadRequest


def is_retryable_status(status: int) -> bool:
    return status == 429 or status >= 500


def backoff_seconds(
    attempt: int,
    retry_after_seconds: float | None = None,
    *,
    base_seconds: float = 0.5,
    cap_seconds: float = 60.0,
    rng: Callable[[], float] = random.random,
) -> float:
    """Full-jitter exponential backoff for retry number ``attempt`` (0 for the first retry).

    ``Retry-After`` is a floor (capped at ``cap_seconds``), with up to one second of jitter added so that a fleet
    told to wait the same time does not return in one herd.
    """
    exponent = min(max(attempt, 0), 30)
    delay = float(rng()) * min(cap_seconds, base_seconds * 2.0**exponent)
    if retry_after_seconds is not None:
        delay = max(delay, min(retry_after_seconds, cap_seconds) + rng())
    return delay


def participants_of(conversation: Mapping[str, Any]) -> list[Mapping[str, Any]]:
    """The participant objects of a conversation; anything malformed (not a list, not objects) is ignored."""
    participants = conversation.get("participants")
    if not isinstance(participants, list):
        return []
    return [p for p in participants if isinstance(p, Mapping)]


def participant_states(conversation: Mapping[str, Any]) -> list[str]:
    return [str(p.get("state", "")) for p in participants_of(conversation)]


def is_closed(conversation: Mapping[str, Any]) -> bool:
    """Closed in genesys-closer's sense: at least one participant, and every one disconnected or terminated."""
    participants = conversation.get("participants")
    if not isinstance(participants, list) or not participants:
        return False
    return all(isinstance(p, Mapping) and p.get("state") in CLOSED_PARTICIPANT_STATES for p in participants)


def message_types(conversation: Mapping[str, Any]) -> set[str]:
    """The message channel types of a MessageConversation (``webmessaging``, ``sms``, ...)."""
    found = set()
    for participant in participants_of(conversation):
        if isinstance(participant.get("type"), str):
            found.add(participant["type"])
    return found


def is_web_messaging(conversation: Mapping[str, Any]) -> bool:
    """True when the customer side of the conversation is web messaging (and no other channel)."""
    return message_types(conversation) == {WEB_MESSAGING}


def pending_wrapups(conversation: Mapping[str, Any]) -> list[str]:
    """IDs of agent participants that are disconnected but still owe a wrap-up."""
    pending = []
    for p in participants_of(conversation):
        if p.get("purpose") not in {"agent", "user"}:
            continue
        if p.get("wrapupRequired") and not p.get("wrapup") and not p.get("wrapupSkipped") and isinstance(
            p.get("id"), str
        ):
            pending.append(p["id"])
    return pending


def open_participants(conversation: Mapping[str, Any]) -> list[str]:
    """IDs of participants not yet disconnected or terminated."""
    return [
        p["id"]
        for p in participants_of(conversation)
        if p.get("state") not in CLOSED_PARTICIPANT_STATES and isinstance(p.get("id"), str)
    ]


@dataclass(frozen=True)
class RateLimitHeaders:
    """The ``inin-ratelimit-*`` headers of one response."""

    allowed: int
    count: int
    reset_seconds: float

    @classmethod
    def parse(cls, headers: Mapping[str, str]) -> RateLimitHeaders | None:
        try:
            return cls(
                allowed=int(headers["inin-ratelimit-allowed"]),
                count=int(headers["inin-ratelimit-count"]),
                reset_seconds=float(headers["inin-ratelimit-reset"]),
            )
        except (KeyError, ValueError, TypeError):
            return None

    def pause_seconds(self, headroom_requests: int = 2) -> float:
        """How long to pause the fleet because the server's window is (nearly) used up; 0 when there is room."""
        if self.allowed - self.count <= headroom_requests:
            return max(self.reset_seconds, 0.0)
        return 0.0


def first_header(headers: Mapping[str, str], names: Iterable[str]) -> str | None:
    for name in names:
        value = headers.get(name)
        if value:
            return value
    return None
