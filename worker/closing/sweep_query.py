"""Sweeps: find open web messaging conversations with the analytics details query and choose which to close.

Runs on workers (it needs Genesys credentials). The query is split into intervals no longer than one query
allows, every page is read, and duplicates across pages and intervals are dropped. Each candidate is chosen or
skipped with a reason. With an idle filter each candidate is read once (``GET .../messages/{id}``) to find its last
message; the close then skips its own first read, so a sweep close costs 2 calls (3 with the idle filter).
"""

from __future__ import annotations

import json
from collections.abc import Callable, Iterator
from dataclasses import asdict, dataclass, field
from datetime import UTC, datetime, timedelta
from functools import partial
from typing import Any

from genesys_closer.shared.ids import parse_conversation_id
from genesys_closer.shared.sweep_filters import SweepFilters, parse_time
from genesys_closer.worker.closing.conversation_state import is_closed, is_web_messaging, participants_of
from genesys_closer.worker.genesys.client import GenesysClient

PAGE_SIZE = 100
PAGING_CAP = 100_000  # "Pagination may not exceed 100000 results" (400 from the details query)
Retrying = Callable[[Callable[[], Any]], Any]
MAX_PAGES_PER_INTERVAL = 10_000


@dataclass
class Candidate:
    conversation_id: str
    chosen: bool
    reason: str
    started: str | None = None
    queue_id: str | None = None

    def as_json(self) -> str:
        return json.dumps(asdict(self), separators=(",", ":"))


@dataclass
class SweepReport:
    candidates: list[Candidate] = field(default_factory=list)
    pages: int = 0
    intervals: int = 0
    splits: int = 0
    unreachable: int = 0
    duplicates_dropped: int = 0
    api_calls: int = 0

    @property
    def chosen(self) -> list[str]:
        return [c.conversation_id for c in self.candidates if c.chosen]


def fmt(moment: datetime) -> str:
    return moment.astimezone(UTC).strftime("%Y-%m-%dT%H:%M:%S.") + f"{moment.microsecond // 1000:03d}Z"


def intervals(filters: SweepFilters, now: datetime) -> list[str]:
    """Query intervals from the oldest wanted start to a minute before now, each at most ``interval_days`` long."""
    end = now - timedelta(minutes=1)
    if filters.started_before:
        end = min(end, parse_time(filters.started_before))
    start = now - timedelta(days=filters.lookback_days)
    if filters.started_after:
        start = max(start, parse_time(filters.started_after))
    if filters.min_age_minutes:
        end = min(end, now - timedelta(minutes=filters.min_age_minutes))
    chunks = []
    step = timedelta(days=filters.interval_days)
    while start < end:
        chunk_end = min(start + step, end)
        chunks.append(f"{fmt(start)}/{fmt(chunk_end)}")
        start = chunk_end
    return chunks


def query_body(interval: str, filters: SweepFilters, page: int) -> dict[str, Any]:
    segment_predicates: list[dict[str, Any]] = [
        {"type": "dimension", "dimension": "mediaType", "operator": "matches", "value": "message"},
        {"type": "dimension", "dimension": "messageType", "operator": "matches", "value": "webmessaging"},
    ]
    segment_filters: list[dict[str, Any]] = [{"type": "and", "predicates": segment_predicates}]
    if filters.queue_ids:
        segment_filters.append({"type": "or", "predicates": [
            {"type": "dimension", "dimension": "queueId", "operator": "matches", "value": q}
            for q in filters.queue_ids]})
    return {
        "interval": interval,
        "order": "asc",
        "orderBy": "conversationStart",
        "conversationFilters": [{"type": "and", "predicates": [
            {"type": "dimension", "dimension": "conversationEnd", "operator": "notExists"}]}],
        "segmentFilters": segment_filters,
        "paging": {"pageSize": PAGE_SIZE, "pageNumber": page},
    }


def iter_rows(client: GenesysClient, filters: SweepFilters, now: datetime,
              report: SweepReport, retrying: Retrying, paging_cap: int = PAGING_CAP) -> Iterator[dict[str, Any]]:
    """Every row of every page of every interval, each conversation once.

    An interval with more hits than the details query pages through (``paging_cap``) is split at a day boundary
    until each part fits: the query returns conversations that started on a day the interval touches (and an open
    conversation is active in every later interval), so only days partition its results. A single day with more
    open conversations than the cap is read up to the cap; the rest are counted as ``unreachable`` (they come up
    in the next sweep, once these are closed)."""
    seen: set[str] = set()
    pending = list(reversed(intervals(filters, now)))
    while pending:
        interval = pending.pop()
        first = retrying(partial(client.query_conversation_details, query_body(interval, filters, 1)))
        report.pages += 1
        report.api_calls += 1
        hits = int(first.get("totalHits") or 0)
        halves = _day_halves(interval) if hits > paging_cap else None
        if halves is not None:
            report.splits += 1
            pending.extend(reversed(halves))
            continue
        report.intervals += 1
        report.unreachable += max(0, hits - paging_cap)
        body, page = first, 1
        while True:
            rows = body.get("conversations") or []
            for row in rows:
                cid = row.get("conversationId")
                if not isinstance(cid, str):
                    continue
                if cid in seen:
                    report.duplicates_dropped += 1
                    continue
                seen.add(cid)
                yield row
            page += 1
            if (len(rows) < PAGE_SIZE or (page - 1) * PAGE_SIZE >= hits or page * PAGE_SIZE > paging_cap
                    or page > MAX_PAGES_PER_INTERVAL):
                break
            body = retrying(partial(client.query_conversation_details, query_body(interval, filters, page)))
            report.pages += 1
            report.api_calls += 1


def _bounds(interval: str) -> tuple[datetime, datetime]:
    start, _, end = interval.partition("/")
    return parse_time(start), parse_time(end)


def _day_halves(interval: str) -> list[str] | None:
    """The interval split at the (UTC) day boundary nearest its middle, or None when it lies within one day."""
    start, end = _bounds(interval)
    first_midnight = start.replace(hour=0, minute=0, second=0, microsecond=0) + timedelta(days=1)
    if first_midnight >= end:
        return None
    days = (end - first_midnight).days
    middle = first_midnight + timedelta(days=days // 2)
    return [f"{fmt(start)}/{fmt(middle)}", f"{fmt(middle)}/{fmt(end)}"]


def _agent_connected(row: dict[str, Any]) -> bool:
    for participant in participants_of(row):
        if participant.get("purpose") not in {"agent", "user"}:
            continue
        for session in participant.get("sessions") or []:
            if any("segmentEnd" not in segment for segment in session.get("segments") or []):
                return True
    return False


def _parked(row: dict[str, Any]) -> str | None:
    """When an agent parked the conversation (an open ``parked`` segment), or None."""
    for participant in participants_of(row):
        for session in _list(participant.get("sessions")):
            for segment in _list(session.get("segments") if isinstance(session, dict) else None):
                if (isinstance(segment, dict) and segment.get("segmentType") == "parked"
                        and "segmentEnd" not in segment):
                    return str(segment.get("segmentStart") or "an unknown time")
    return None


def _queue_of(row: dict[str, Any]) -> str | None:
    for participant in participants_of(row):
        for session in participant.get("sessions") or []:
            for segment in session.get("segments") or []:
                if segment.get("queueId"):
                    return str(segment["queueId"])
    return None


def _list(value: object) -> list[Any]:
    return value if isinstance(value, list) else []


def last_message_time(conversation: dict[str, Any]) -> datetime | None:
    times = [parse_time(m["messageTime"]) for p in participants_of(conversation)
             for m in _list(p.get("messages")) if isinstance(m, dict) and isinstance(m.get("messageTime"), str)]
    return max(times) if times else None


def evaluate(row: dict[str, Any], filters: SweepFilters, now: datetime) -> Candidate:
    """Choose or skip one analytics row (without the idle filter, which needs the conversation itself)."""
    cid = parse_conversation_id(row["conversationId"])
    started = row.get("conversationStart")
    candidate = Candidate(cid, False, "", started, _queue_of(row))
    if row.get("conversationEnd"):
        candidate.reason = "already ended"
        return candidate
    if started and filters.min_age_minutes:
        age = (now - parse_time(started)).total_seconds() / 60
        if age < filters.min_age_minutes:
            candidate.reason = f"too young ({age:.0f} min < {filters.min_age_minutes:g} min)"
            return candidate
    parked = _parked(row)
    if parked is not None and not filters.include_parked:
        candidate.reason = f"parked by an agent since {parked} (set aside on purpose; --include-parked to close)"
        return candidate
    if filters.skip_connected_agent and _agent_connected(row):
        candidate.reason = "an agent is still connected"
        return candidate
    candidate.chosen = True
    age_text = f"{(now - parse_time(started)).total_seconds() / 60:.0f} min old" if started else "open"
    candidate.reason = f"open web messaging, {age_text}"
    return candidate


def _no_retry(call: Callable[[], Any]) -> Any:
    return call()


def run_sweep(client: GenesysClient, filters: SweepFilters, now: datetime | None = None,
              retrying: Retrying = _no_retry, paging_cap: int = PAGING_CAP) -> SweepReport:
    """Query, page, de-duplicate and choose. Stops choosing at ``max_count``."""
    now = now or datetime.now(tz=UTC)
    report = SweepReport()
    chosen = 0
    for row in iter_rows(client, filters, now, report, retrying, paging_cap):
        candidate = evaluate(row, filters, now)
        if candidate.chosen and filters.max_count is not None and chosen >= filters.max_count:
            candidate.chosen, candidate.reason = False, f"over --max-count {filters.max_count}"
        if candidate.chosen and filters.idle_minutes is not None:
            candidate = _check_idle(client, candidate, filters.idle_minutes, now, report, retrying)
        chosen += candidate.chosen
        report.candidates.append(candidate)
    return report


def _check_idle(client: GenesysClient, candidate: Candidate, idle_minutes: float, now: datetime,
                report: SweepReport, retrying: Retrying) -> Candidate:
    conversation = retrying(lambda: client.get_message_conversation(candidate.conversation_id))
    report.api_calls += 1
    if is_closed(conversation):
        candidate.chosen, candidate.reason = False, "already closed"
    elif not is_web_messaging(conversation):
        candidate.chosen, candidate.reason = False, "not web messaging"
    else:
        last = last_message_time(conversation)
        idle = None if last is None else (now - last).total_seconds() / 60
        if idle is not None and idle < idle_minutes:
            candidate.chosen, candidate.reason = False, f"active ({idle:.0f} min since last message)"
        else:
            shown = "no messages" if idle is None else f"idle {idle:.0f} min"
            candidate.reason = f"{candidate.reason}, {shown}"
    return candidate

