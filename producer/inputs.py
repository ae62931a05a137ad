"""Reading conversation IDs from files, streamed: plain lines, CSV with a column name, or JSON Lines."""

from __future__ import annotations

import csv
import json
from collections.abc import Iterator
from typing import IO

from genesys_closer.config.errors import CloserError

ID_COLUMNS = ("conversation_id", "conversationId", "id")
FORMATS = ("auto", "lines", "csv", "jsonl")


class InputError(CloserError, ValueError):
    """The file's format or column cannot be used."""


def detect_format(first_line: str, name: str) -> str:
    lowered = name.lower()
    if lowered.endswith(".csv"):
        return "csv"
    if lowered.endswith((".jsonl", ".ndjson")):
        return "jsonl"
    stripped = first_line.strip()
    if stripped.startswith("{"):
        return "jsonl"
    if "," in stripped or "\t" in stripped:
        return "csv"
    return "lines"


MAX_LINE = 10_000  # an ID line longer than this is garbage: reported as an invalid item, never parsed


def read_ids(stream: IO[str], *, fmt: str = "auto", column: str | None = None, name: str = "",
             column_hint: str = "name it with --column") -> Iterator[object]:
    """Yield each raw ID (not validated: ``close_many`` does that, per item). Blank lines and ``#`` comments are
    skipped in plain files. A file that cannot be read as text (binary, not UTF-8, a broken CSV) raises InputError
    naming the line; the batch being built from it is then discarded. ``column_hint`` tells how this caller names
    the ID column of a CSV whose header has none of the usual names."""
    try:
        yield from _read_ids(stream, fmt=fmt, column=column, name=name, column_hint=column_hint)
    except UnicodeDecodeError as exc:
        raise InputError(f"{name or 'input'} is not UTF-8 text (a binary file?): byte {exc.start}") from None
    except csv.Error as exc:
        raise InputError(f"{name or 'input'} is not readable CSV: {str(exc)[:200]}") from None


def _read_ids(stream: IO[str], *, fmt: str, column: str | None, name: str, column_hint: str) -> Iterator[object]:
    if fmt not in FORMATS:
        raise InputError(f"unknown format {fmt!r}; use one of {', '.join(FORMATS)}")
    first = stream.readline()
    if fmt == "auto":
        fmt = detect_format(first, name)

    def lines() -> Iterator[str]:
        if first:
            yield first
        yield from stream

    if fmt == "lines":
        for line in lines():
            text = line.strip()
            if text and not text.startswith("#"):
                yield text
    elif fmt == "csv":
        dialect = "excel-tab" if "\t" in first and "," not in first else "excel"
        reader = csv.DictReader(lines(), dialect=dialect)
        fields = reader.fieldnames or []
        wanted = column or next((c for c in ID_COLUMNS if c in fields), None)
        if wanted is None or wanted not in fields:
            raise InputError(f"no column {column or ' / '.join(ID_COLUMNS)!r} in CSV header {fields}; {column_hint}")
        for row in reader:
            yield row.get(wanted)
    else:
        key = column or "conversation_id"
        for number, line in enumerate(lines(), start=1):
            if not line.strip():
                continue
            if len(line) > MAX_LINE:
                yield f"<line {number}: longer than {MAX_LINE} characters>"
                continue
            try:
                record = json.loads(line)
            except (ValueError, RecursionError):
                yield f"<line {number}: not JSON>"
                continue
            if isinstance(record, dict):
                yield record.get(key, record.get("conversationId", record.get("id")))
            else:
                yield record
