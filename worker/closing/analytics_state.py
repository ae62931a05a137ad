"""Pure decisions about a conversation as analytics shows it (``AnalyticsConversationWithoutAttributes``, one row of
the details query or the multi-get by id). No I/O.

Analytics lags reality and describes a conversation by its participants' sessions and segments, not by participant
states. A row is *ended* when it carries ``conversationEnd``, or when every participant's segments have ended;
an open ``wrapup`` segment is after-call work of a participant who has already left, so it does not keep the
conversation open (it is counted as a wrap-up still owed instead, as the conversation API's ``wrapupRequired``
would be).
"""

from __future__ import annotations

from collections.abc import Mapping
from typing import Any

from genesys_closer.worker.closing.conversation_state import WEB_MESSAGING, participants_of

WRAPUP_SEGMENT = "wrapup"


def _items(value: object) -> list[Mapping[str, Any]]:
    return [item for item in value if isinstance(item, Mapping)] if isinstance(value, list) else []


def _segments(participant: Mapping[str, Any]) -> list[Mapping[str, Any]]:
    return [segment for session in _items(participant.get("sessions")) for segment in _items(session.get("segments"))]


def participant_ended(participant: Mapping[str, Any]) -> bool:
    """Every segment of the participant (after-call work aside) has ended; a participant without segments has
    not (analytics has not described it yet)."""
    segments = [s for s in _segments(participant) if s.get("segmentType") != WRAPUP_SEGMENT]
    return bool(segments) and all(s.get("segmentEnd") for s in segments)


def row_ended(row: Mapping[str, Any]) -> bool:
    """Closed in genesys-closer's sense, as analytics shows it: ``conversationEnd`` set, or every participant's
    segments ended."""
    if row.get("conversationEnd"):
        return True
    participants = participants_of(row)
    return bool(participants) and all(participant_ended(p) for p in participants)


def row_message_types(row: Mapping[str, Any], purpose: str | None = None) -> set[str]:
    """The ``messageType`` of every message session (of participants with ``purpose``, when given)."""
    found = set()
    for participant in participants_of(row):
        if purpose is not None and participant.get("purpose") != purpose:
            continue
        for session in _items(participant.get("sessions")):
            if session.get("mediaType") == "message" and isinstance(session.get("messageType"), str):
                found.add(session["messageType"])
    return found


def row_is_web_messaging(row: Mapping[str, Any]) -> bool:
    """The customer's session is web messaging (every message session when no customer is described), the
    analytics counterpart of ``conversation_state.is_web_messaging``."""
    customer = row_message_types(row, "customer")
    if customer:
        return customer == {WEB_MESSAGING}
    return row_message_types(row) == {WEB_MESSAGING}


def row_pending_wrapups(row: Mapping[str, Any]) -> int:
    """Agents that left but still owe a wrap-up: an open ``wrapup`` segment (after-call work) without a code."""
    return sum(
        1 for p in participants_of(row)
        if p.get("purpose") in {"agent", "user"}
        and any(s.get("segmentType") == WRAPUP_SEGMENT and not s.get("segmentEnd") and not s.get("wrapUpCode")
                for s in _segments(p))
    )


def row_participant_states(row: Mapping[str, Any]) -> list[dict[str, str]]:
    """Purpose and state of each participant for the outcome record (``disconnected`` once its segments ended)."""
    return [{"purpose": str(p.get("purpose", "")), "state": "disconnected" if participant_ended(p) else "connected"}
            for p in participants_of(row)]
