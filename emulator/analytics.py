"""POST /api/v2/analytics/conversations/details/query: the subset of ``ConversationQuery`` the closer uses.

Supported: ``interval`` (required; conversations that were active in it and started on a day it touches),
``conversationFilters`` on ``conversationEnd``/``conversationStart`` (``exists``/``notExists``),
``segmentFilters`` on ``mediaType``, ``messageType``, ``queueId``, ``purpose``, ``direction`` (``matches``),
``type`` ``and``/``or`` for filters and clauses, ``order``, ``orderBy`` ``conversationStart``/``conversationEnd``
and ``paging{pageSize, pageNumber}``. Anything else is a 400, as an unknown field would be.

``AnalyticsVariants`` lets analytics' word stray from the live conversation the ways a real org might: rows
without ``messageType``, ended rows without ``conversationEnd``, and ``stuck`` conversations shown ended while
they are open (from the start, or once a conversation-level PATCH reached them). Filters still match what the
conversation really is; only the rows say less (or something else).
"""

from __future__ import annotations

from dataclasses import dataclass
from datetime import UTC, datetime, timedelta
from typing import Any

from genesys_closer.emulator.model import (
    Conversation,
    Participant,
    conversation_end,
    parse_iso,
    render_analytics,
    shown_ended,
)

CONVERSATION_DIMENSIONS = {"conversationEnd", "conversationStart", "conversationId"}
SEGMENT_DIMENSIONS = {"mediaType", "messageType", "queueId", "purpose", "direction"}


class QueryError(ValueError):
    """The query is malformed; becomes a 400 ``bad.request``."""


@dataclass(frozen=True)
class AnalyticsVariants:
    """How analytics' rows differ from a faithful org (all defaults: faithful)."""

    message_type: bool = True  # sessions carry messageType
    conversation_end: bool = True  # ended rows carry conversationEnd
    stuck_ended: str = "off"  # ``stuck`` conversations shown ended: off | always | after_patch

    def seen(self, conversation: Conversation, participants: list[Participant], cutoff: float) -> list[Participant]:
        """What analytics shows of ``participants`` (reality as of ``cutoff``)."""
        if conversation.kind != "stuck" or self.stuck_ended == "off":
            return participants
        if self.stuck_ended == "always":
            return shown_ended(participants, min(cutoff, conversation.last_message_time + 1))
        patched_at = conversation.patched_at
        if patched_at is not None and patched_at <= cutoff:
            return shown_ended(participants, patched_at)
        return participants

    def render(self, conversation: Conversation, participants: list[Participant]) -> dict[str, Any]:
        return render_analytics(conversation, participants, message_type=self.message_type,
                                with_end=self.conversation_end)


FAITHFUL = AnalyticsVariants()


def _interval(text: object, max_days: int) -> tuple[float, float]:
    if not isinstance(text, str) or "/" not in text:
        raise QueryError("interval is required, as 'start/end' in ISO-8601")
    start_text, end_text = text.split("/", 1)
    try:
        start, end = parse_iso(start_text), parse_iso(end_text)
    except ValueError as exc:
        raise QueryError(f"invalid interval {text!r}") from exc
    if end <= start:
        raise QueryError("interval end must be after its start")
    if end - start > max_days * 86_400:
        raise QueryError(f"interval too long: at most {max_days} days per query")
    return start, end


def _predicates(block: dict[str, Any], allowed: set[str]) -> tuple[str, list[dict[str, Any]]]:
    kind = block.get("type", "and")
    if kind not in {"and", "or"}:
        raise QueryError(f"filter type must be 'and' or 'or', got {kind!r}")
    predicates = list(block.get("predicates") or [])
    for clause in block.get("clauses") or []:
        predicates.extend(clause.get("predicates") or [])
    for predicate in predicates:
        dimension = predicate.get("dimension")
        if dimension not in allowed:
            raise QueryError(f"unsupported dimension {dimension!r}")
        if predicate.get("operator", "matches") not in {"matches", "exists", "notExists"}:
            raise QueryError(f"unsupported operator {predicate.get('operator')!r}")
    return kind, predicates


def _combine(kind: str, results: list[bool]) -> bool:
    if not results:
        return True
    return all(results) if kind == "and" else any(results)


def _conversation_value(conversation: Conversation, participants: list[Participant], dimension: str) -> Any:
    if dimension == "conversationEnd":
        return conversation_end(participants)
    if dimension == "conversationStart":
        return conversation.start_time
    return conversation.id


def _segment_values(conversation: Conversation, participant: Participant) -> dict[str, Any]:
    return {
        "mediaType": "message",
        "messageType": conversation.message_type,
        "queueId": participant.queue_id,
        "purpose": participant.purpose,
        "direction": participant.direction,
    }


def _test(value: Any, predicate: dict[str, Any]) -> bool:
    operator = predicate.get("operator", "matches")
    if operator == "exists":
        return value is not None
    if operator == "notExists":
        return value is None
    return value is not None and str(value) == str(predicate.get("value"))


def matches(conversation: Conversation, participants: list[Participant], query: dict[str, Any]) -> bool:
    for block in query.get("conversationFilters") or []:
        kind, predicates = _predicates(block, CONVERSATION_DIMENSIONS)
        results = [_test(_conversation_value(conversation, participants, p["dimension"]), p) for p in predicates]
        if not _combine(kind, results):
            return False
    for block in query.get("segmentFilters") or []:
        kind, predicates = _predicates(block, SEGMENT_DIMENSIONS)
        # A segment filter holds when one participant's segment satisfies the whole block.
        if not any(
            _combine(kind, [_test(_segment_values(conversation, p).get(q["dimension"]), q) for q in predicates])
            for p in participants
        ):
            return False
    return True


def analytics_participants(conversation: Conversation, now: float, lag_seconds: float,
                           variants: AnalyticsVariants = FAITHFUL) -> list[Participant] | None:
    """What analytics shows of a conversation: reality ``lag_seconds`` ago (None: not known yet); without a lag,
    what readers see now."""
    if lag_seconds <= 0:
        return variants.seen(conversation, conversation.visible_participants(now), now)
    seen = conversation.analytics_view(now - lag_seconds)
    return None if seen is None else variants.seen(conversation, seen, now - lag_seconds)


def multi_get(conversations: dict[str, Conversation], ids: list[str], now: float, *, max_ids: int,
              lag_seconds: float = 0.0, variants: AnalyticsVariants = FAITHFUL) -> dict[str, Any]:
    """``GET /api/v2/analytics/conversations/details?id=...``: the rows analytics knows, unknown ids left out."""
    if not ids:
        raise QueryError("at least one id is required")
    if len(ids) > max_ids:
        raise QueryError(f"too many ids: at most {max_ids} per request")
    rows = []
    for cid in dict.fromkeys(ids):
        conversation = conversations.get(cid)
        if conversation is None:
            continue
        participants = analytics_participants(conversation, now, lag_seconds, variants)
        if participants is not None:
            rows.append(variants.render(conversation, participants))
    return {"conversations": rows}


def run_query(
    conversations: list[Conversation], query: dict[str, Any], now: float, *, max_page_size: int,
    max_interval_days: int, paging_cap: int = 100_000, lag_seconds: float = 0.0,
    variants: AnalyticsVariants = FAITHFUL,
) -> dict[str, Any]:
    if not isinstance(query, dict):
        raise QueryError("body must be a ConversationQuery object")
    start, end = _interval(query.get("interval"), max_interval_days)
    first_day = datetime.fromtimestamp(start, tz=UTC).replace(hour=0, minute=0, second=0, microsecond=0)
    last_day = datetime.fromtimestamp(end, tz=UTC).replace(hour=0, minute=0, second=0, microsecond=0)
    day_from, day_to = first_day.timestamp(), (last_day + timedelta(days=1)).timestamp()
    paging = query.get("paging") or {}
    page_size = int(paging.get("pageSize", 25))
    page_number = int(paging.get("pageNumber", 1))
    if not 1 <= page_size <= max_page_size:
        raise QueryError(f"paging.pageSize must be between 1 and {max_page_size}")
    if page_number < 1:
        raise QueryError("paging.pageNumber must be at least 1")
    if page_number * page_size > paging_cap:
        raise QueryError(f"Pagination may not exceed {paging_cap} results")
    order_by = query.get("orderBy", "conversationStart")
    if order_by not in {"conversationStart", "conversationEnd"}:
        raise QueryError(f"unsupported orderBy {order_by!r}")
    hits = []
    for conversation in conversations:
        seen = analytics_participants(conversation, now, lag_seconds, variants)
        if seen is None:
            continue
        participants = seen
        ended = conversation_end(participants)
        active_in_interval = conversation.start_time < end and (ended is None or ended >= start)
        if not (active_in_interval and day_from <= conversation.start_time < day_to):
            continue
        if matches(conversation, participants, query):
            hits.append((conversation, participants))
    def sort_key(item: tuple[Conversation, list[Participant]]) -> tuple[float, str]:
        if order_by == "conversationEnd":
            return (conversation_end(item[1]) or float("inf"), item[0].id)
        return (item[0].start_time, item[0].id)
    hits.sort(key=sort_key, reverse=query.get("order", "asc") == "desc")
    page = hits[(page_number - 1) * page_size: page_number * page_size]
    body: dict[str, Any] = {"totalHits": len(hits)}
    if page:
        body["conversations"] = [variants.render(c, p) for c, p in page]
    return body
