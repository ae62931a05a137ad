"""Output is data, never control (``producer.display``): every control character is shown escaped."""

from __future__ import annotations

import io
import json

import pytest
from rich.console import Console
from rich.table import Table

from genesys_closer.producer.display import cell, inert, json_line

SPOOF = "\x1b]0;x\x07\x1b[2J\nALL BATCHES FINISHED OK\r\n"


@pytest.mark.parametrize(("raw", "shown"), [
    ("outage 2026-11-20", "outage 2026-11-20"),
    ("café ✓ 日本", "café ✓ 日本"),  # printable Unicode stays as it is
    (SPOOF, "\\x1b]0;x\\x07\\x1b[2J\\nALL BATCHES FINISHED OK\\r\\n"),
    ("a\tb\x00c", "a\\tb\\x00c"),
    ("del\x7f", "del\\x7f"),  # DEL
    ("csi\x9b2J", "csi\\x9b2J"),  # C1 (a one-byte CSI)
    ("line\u2028sep\u2029", "line\\u2028sep\\u2029"),
    ("evil\u202egnp.exe", "evil\\u202egnp.exe"),  # a right-to-left override
    ("[bold red]x[/]", "[bold red]x[/]"),  # markup is not a control character: ``cell`` keeps it text
    (None, ""),
    (12, "12"),
])
def test_inert(raw: object, shown: str) -> None:
    assert inert(raw) == shown


def test_every_c0_del_and_c1_character_is_escaped() -> None:
    controls = "".join(map(chr, [*range(0x20), 0x7F, *range(0x80, 0xA0)]))
    shown = inert(controls)
    assert all(0x20 <= ord(char) < 0x7F for char in shown)
    assert shown.count("\\") == len(controls)


def test_a_table_cell_is_literal() -> None:
    out = io.StringIO()
    table = Table("label")
    table.add_row(cell(SPOOF + "[blink]:warning:"))
    Console(file=out, width=300, force_terminal=True, emoji=False).print(table)
    printed = out.getvalue()
    assert "\x1b]" not in printed and "\x07" not in printed and "\x1b[2J" not in printed
    assert "[blink]" in printed and ":warning:" in printed
    assert not any(line.strip("│ ").startswith("ALL BATCHES") for line in printed.splitlines())


def test_json_line_is_one_ascii_line_and_round_trips() -> None:
    data = {"label": SPOOF + "\x7f\x9b", "n": 1}
    line = json_line(data)
    assert "\n" not in line and all(0x20 <= ord(char) < 0x7F for char in line)
    assert json.loads(line) == data
