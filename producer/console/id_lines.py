"""A pasted or uploaded id list, validated line by line: what the New batch page's dry run shows (the browser checks
the same rule first; this is the server's word). Plain lines skip blanks and ``#`` comments as ``producer.inputs``
does; a CSV takes the named column (``column``) or else the ``conversationId`` / ``conversation_id`` / ``id`` one, and
its line numbers are the file's; JSON Lines take each line's ``column`` key (``conversation_id`` unless named) or a
line that is a JSON string."""

from __future__ import annotations

import csv
import io
import json
from collections.abc import Iterator
from dataclasses import dataclass, field
from typing import Any

from genesys_closer.producer.inputs import ID_COLUMNS, InputError
from genesys_closer.shared.ids import InvalidConversationId, parse_conversation_id

MAX_PROBLEMS = 100  # invalid lines reported one by one; the rest are counted


@dataclass
class LineCheck:
    valid: int = 0
    duplicates: int = 0
    invalid: int = 0
    problems: list[dict[str, Any]] = field(default_factory=list)
    ids: list[str] = field(default_factory=list)

    def as_dict(self) -> dict[str, Any]:
        return {"valid": self.valid, "duplicates": self.duplicates, "invalid": self.invalid,
                "problems": self.problems}


def _json_value(line: str, key: str) -> str:
    """The id a JSON Lines line carries, or the line itself when it carries none (reported invalid)."""
    try:
        parsed = json.loads(line)
    except (ValueError, RecursionError):
        return line
    if isinstance(parsed, dict):
        value = parsed.get(key)
        return value if isinstance(value, str) else line
    return parsed if isinstance(parsed, str) else line


def numbered_values(text: str, fmt: str, column: str | None = None) -> Iterator[tuple[int, str]]:
    """(line number, raw value) of each id in ``text``; ``fmt`` is ``lines``, ``csv`` or ``jsonl``."""
    if fmt in {"lines", "jsonl"}:
        for number, line in enumerate(text.splitlines(), start=1):
            value = line.strip()
            if fmt == "jsonl" and value:
                yield number, _json_value(value, column or "conversation_id")
            elif value and not value.startswith("#"):
                yield number, value
        return
    first = text.split("\n", 1)[0]
    dialect = "excel-tab" if "\t" in first and "," not in first else "excel"
    reader = csv.DictReader(io.StringIO(text), dialect=dialect)
    try:
        fields = reader.fieldnames or []
        wanted = column if column is not None else next((c for c in ID_COLUMNS if c in fields), None)
        if wanted is None or wanted not in fields:
            raise InputError(f"no column {column or ' / '.join(ID_COLUMNS)!r} in the CSV header {fields[:20]}")
        for row in reader:
            yield reader.line_num, str(row.get(wanted) or "")
    except csv.Error as exc:
        raise InputError(f"not readable CSV: {str(exc)[:200]}") from None


def check_lines(text: str, fmt: str, max_ids: int, column: str | None = None) -> LineCheck:
    """Every id validated (as ``close_many`` will), duplicates counted, invalid ones reported with line numbers."""
    check = LineCheck()
    seen: set[str] = set()
    for number, value in numbered_values(text, fmt, column):
        try:
            canonical = parse_conversation_id(value)
        except InvalidConversationId as exc:
            check.invalid += 1
            if len(check.problems) < MAX_PROBLEMS:
                check.problems.append({"line": number, "value": value[:100], "problem": str(exc)[:200]})
            continue
        if canonical in seen:
            check.duplicates += 1
            continue
        seen.add(canonical)
        check.valid += 1
        check.ids.append(canonical)
        if check.valid > max_ids:
            raise InputError(f"at most {max_ids} ids per batch")
    return check
