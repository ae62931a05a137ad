"""Output is data, never control: text from Redis, files or callers shown inertly on a terminal.

Labels, sources, ids and error messages come from whoever can start a batch or write to Redis. Printed raw, a
label could clear the screen, retitle the terminal or fake a line of output (``\\x1b]0;...\\x07\\x1b[2J``, a
newline and "ALL BATCHES FINISHED OK"). ``inert`` escapes every control character (C0 including newlines and tabs,
DEL, C1), line and paragraph separators and the bidirectional overrides, as Python escapes them (``\\x1b``,
``\\n``); ``cell`` wraps the result for a rich table so that ``[bold]`` in data stays text, not markup; ``json_line``
is the ``--json`` form (ASCII JSON, which escapes C0 and C1, plus DEL, which JSON leaves raw).
"""

from __future__ import annotations

import json
import unicodedata
from typing import Any

from rich.text import Text

# Unicode's bidirectional embeddings, overrides and isolates (they reorder what a terminal shows)
BIDI_CONTROLS = frozenset("\u202a\u202b\u202c\u202d\u202e\u2066\u2067\u2068\u2069\u200e\u200f\u061c")
SHORT_ESCAPES = {"\n": "\\n", "\r": "\\r", "\t": "\\t"}


def _escaped(char: str) -> str:
    if char in SHORT_ESCAPES:
        return SHORT_ESCAPES[char]
    code = ord(char)
    return f"\\x{code:02x}" if code <= 0xFF else f"\\u{code:04x}"


def _is_control(char: str) -> bool:
    return unicodedata.category(char) in ("Cc", "Zl", "Zp") or char in BIDI_CONTROLS


def inert(value: object) -> str:
    """``value`` as text with every control character escaped (None as the empty string)."""
    shown = "" if value is None else value if isinstance(value, str) else str(value)
    if shown.isprintable() and not any(char in BIDI_CONTROLS for char in shown):
        return shown  # the common case, without a per-character walk
    return "".join(_escaped(char) if _is_control(char) else char for char in shown)


def cell(value: object) -> Text:
    """A rich table cell showing ``value`` literally: control characters escaped, no markup, no emoji codes."""
    return Text(inert(value))


def json_line(data: Any) -> str:
    """One JSON object on one line, safe on a terminal: ASCII only (C0 and C1 escaped), DEL escaped too."""
    return json.dumps(data, ensure_ascii=True, separators=(", ", ": ")).replace("\x7f", "\\u007f")
