"""Pure decisions about a conversation as analytics shows it (``AnalyticsConversationWithoutAttributes``, one row of
the details query or the multi-get by id). No I/O.

Analytics lags reality and describes a conversation by its participants' sessions and segments, not by participant
states. A row *looks ended* when it carries ``conversationEnd``, or when every participant's segments have ended;
an open ``wrapup`` segment is after-call work of a participant who has already left, so it does not keep the
conversation open (it is counted as a wrap-up still owed instead, as the conversation API's ``wrapupRequired``
would be).

Analytics is a second source whose behaviour Genesys documents only in part, so it may speed a close up but never
decide its outcome alone (``precheck_step``, ``confirm_step``):

* only ``conversationEnd`` (documented) can confirm a close, and only subject to sampling
  (``worker.checks.analytics_trust``);
  every segment ended without it is an inference: a live read decides;
* a row that looks ended, or whose customer session is not (or not visibly: ``messageType`` is optional) web
  messaging, never ends an item ``already_closed`` or ``not_web_messaging``: a live read decides;
* an open, visibly web messaging row goes straight to the PATCH.
"""

from __future__ import annotations

from collections.abc import Mapping
from enum import StrEnum
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


def row_confirms_end(row: Mapping[str, Any]) -> bool:
    """Analytics' documented end signal: ``conversationEnd`` is set."""
    return bool(row.get("conversationEnd"))


def row_ended(row: Mapping[str, Any]) -> bool:
    """Looks closed in genesys-closer's sense, as analytics shows it: ``conversationEnd`` set, or every participant's
    segments ended (an inference: never enough on its own to skip or confirm a close)."""
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


class PrecheckStep(StrEnum):
    """What a pre-check read leads to for one item."""

    PATCH = "patch"  # open and visibly web messaging: straight to the PATCH
    READ_LIVE = "read_live"  # looks ended, or not (visibly) web messaging: a live read decides
    NOT_IN_ANALYTICS = "not_in_analytics"  # analytics does not know it (yet): a live read decides


class ConfirmStep(StrEnum):
    """What a confirmation read leads to for one item (after our PATCH)."""

    ENDED = "ended"  # conversationEnd: confirmed by analytics, subject to the sample (worker.checks.analytics_trust)
    READ_LIVE = "read_live"  # every segment ended but no conversationEnd: a live read decides
    NOT_YET = "not_yet"  # still open in analytics, or not in it: read again (a live read after the timeout)


def precheck_step(row: Mapping[str, Any] | None, *, allow_other_message_types: bool) -> PrecheckStep:
    if row is None:
        return PrecheckStep.NOT_IN_ANALYTICS
    if row_ended(row):
        return PrecheckStep.READ_LIVE
    if not allow_other_message_types and not row_is_web_messaging(row):
        return PrecheckStep.READ_LIVE
    return PrecheckStep.PATCH


def confirm_step(row: Mapping[str, Any] | None) -> ConfirmStep:
    if row is None:
        return ConfirmStep.NOT_YET
    if row_confirms_end(row):
        return ConfirmStep.ENDED
    if row_ended(row):
        return ConfirmStep.READ_LIVE
    return ConfirmStep.NOT_YET
