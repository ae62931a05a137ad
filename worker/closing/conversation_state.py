"""Pure decisions about a conversation read from Genesys: is it closed, is it web messaging, who is still on it.

"Closed" in genesys-closer's sense: the conversation has participants and every one of them is ``disconnected`` or
``terminated`` (Genesys has no conversation-level "closed" state). Nothing here does I/O.
"""

from __future__ import annotations

from collections.abc import Mapping
from datetime import datetime
from typing import Any

CLOSED_PARTICIPANT_STATES = frozenset({"disconnected", "terminated"})
WEB_MESSAGING = "webmessaging"


def participants_of(conversation: Mapping[str, Any]) -> list[Mapping[str, Any]]:
    """The participant objects of a conversation; anything malformed (not a list, not objects) is ignored."""
    participants = conversation.get("participants")
    if not isinstance(participants, list):
        return []
    return [p for p in participants if isinstance(p, Mapping)]


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
    """True when the customer's session is web messaging.

    Decided from the customer participant: which other participants (acd, agent, workflow) carry a ``type`` is not
    documented, and they may say ``unknown``. Without a typed customer, every typed participant must agree."""
    customer_types = {p.get("type") for p in participants_of(conversation)
                      if p.get("purpose") == "customer" and isinstance(p.get("type"), str)}
    if customer_types:
        return customer_types == {WEB_MESSAGING}
    return message_types(conversation) - {"unknown"} == {WEB_MESSAGING}


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


def closed_before(conversation: Mapping[str, Any], moment: float, tolerance_seconds: float = 1.0) -> bool:
    """The answer describes a conversation that had ended before ``moment`` (epoch seconds), for example a 200 to a
    PATCH of an already closed conversation: its ``endTime`` (``Conversation``), or else every participant's
    ``endTime``, lies before it. Missing or unreadable times mean no."""

    def epoch(value: object) -> float | None:
        if not isinstance(value, str):
            return None
        try:
            return datetime.fromisoformat(value.replace("Z", "+00:00")).timestamp()
        except ValueError:
            return None

    ended = epoch(conversation.get("endTime"))
    if ended is None:
        participants = participants_of(conversation)
        ends = [epoch(p.get("endTime")) for p in participants]
        if not ends or any(end is None for end in ends):
            return False
        ended = max(end for end in ends if end is not None)
    return ended < moment - tolerance_seconds


def answer_shows_end(conversation: Mapping[str, Any]) -> bool:
    """A ``Conversation`` (the message PATCH's answer) shows every participant gone: its ``endTime`` ("null when the
    conversation is still active"), or else every participant has an ``endTime``."""
    if conversation.get("endTime"):
        return True
    participants = participants_of(conversation)
    return bool(participants) and all(p.get("endTime") for p in participants)
