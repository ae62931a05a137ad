"""Streaming export of batch results as CSV (safe against formula injection) or JSON Lines."""

from __future__ import annotations

import csv
import io
import json
from collections.abc import Iterable, Iterator
from datetime import UTC, datetime
from typing import IO

from genesys_closer.shared.outcomes import CloseResult

CSV_COLUMNS = ("conversation_id", "outcome", "attempts", "api_calls", "started_at", "finished_at", "action",
               "confirmed_by", "wrapups_applied", "wrapups_pending", "http_status", "error_code", "error",
               "participant_states", "correlation_ids", "batch_id", "org")
FORMULA_PREFIXES = ("=", "+", "-", "@", "\t", "\r", "|", "%")


def safe_cell(value: object) -> str:
    """A CSV cell that spreadsheets will not evaluate: text starting like a formula gets a leading quote."""
    text = "" if value is None else str(value)
    if text.startswith(FORMULA_PREFIXES):
        return "'" + text
    return text


def _time(epoch: float | None) -> str:
    if not epoch:
        return ""
    return datetime.fromtimestamp(epoch, tz=UTC).isoformat(timespec="milliseconds").replace("+00:00", "Z")


def csv_lines(results: Iterable[CloseResult]) -> Iterator[str]:
    """The CSV export, one line at a time (header first): for files and for streamed HTTP responses."""
    buffer = io.StringIO()
    writer = csv.writer(buffer)

    def line(values: list[object]) -> str:
        writer.writerow(values)
        text = buffer.getvalue()
        buffer.seek(0)
        buffer.truncate()
        return text

    yield line(list(CSV_COLUMNS))
    for r in results:
        states = ";".join(f"{p.get('purpose')}:{p.get('state')}" for p in r.participant_states)
        row = [r.conversation_id, r.outcome.value, r.attempts, round(r.api_calls, 4), _time(r.started_at),
               _time(r.finished_at), r.action, r.confirmed_by, r.wrapups_applied, r.wrapups_pending, r.http_status,
               r.error_code, r.error, states, ";".join(r.correlation_ids), r.batch_id, r.org]
        yield line([safe_cell(v) for v in row])


def jsonl_lines(results: Iterable[CloseResult]) -> Iterator[str]:
    for r in results:
        yield json.dumps(r.as_dict(), separators=(",", ":")) + "\n"


def write_csv(results: Iterable[CloseResult], out: IO[str]) -> int:
    """Write the CSV export; returns the number of items."""
    count = -1
    for text in csv_lines(results):
        out.write(text)
        count += 1
    return count


def write_jsonl(results: Iterable[CloseResult], out: IO[str]) -> int:
    count = 0
    for text in jsonl_lines(results):
        out.write(text)
        count += 1
    return count
