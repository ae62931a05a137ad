"""The console's pure parts: shared reads (one read per interval however many viewers), closes per minute and ETA,
and the line-numbered check of a pasted list."""

from __future__ import annotations

import threading
from concurrent.futures import ThreadPoolExecutor

import pytest

from genesys_closer.producer.console.id_lines import check_lines
from genesys_closer.producer.console.live import Rates, SharedReads
from genesys_closer.producer.inputs import InputError

VALID = "3b47a74f-a827-4166-ae62-f6ba6d7268ae"
OTHER = "6a1c2d3e-0000-4000-8000-00000000a11e"


class Clock:
    def __init__(self) -> None:
        self.now = 1000.0

    def __call__(self) -> float:
        return self.now


def test_twenty_viewers_at_once_cause_one_read() -> None:
    clock = Clock()
    reads = SharedReads(2.0, clock)
    gate = threading.Event()
    calls: list[int] = []

    def slow_read() -> int:
        gate.wait(5)
        calls.append(1)
        return len(calls)

    with ThreadPoolExecutor(20) as pool:
        futures = [pool.submit(reads.get, "batch:x", slow_read) for _ in range(20)]
        gate.set()
        answers = {f.result() for f in futures}
    assert answers == {1} and reads.reads == 1
    clock.now += 1.9
    assert reads.get("batch:x", slow_read) == 1 and reads.reads == 1  # still fresh
    clock.now += 0.2
    assert reads.get("batch:x", slow_read) == 2 and reads.reads == 2  # one more read per interval
    assert reads.get("batch:y", slow_read) == 3  # each key its own


def test_rates_and_eta_from_successive_reads() -> None:
    clock = Clock()
    rates = Rates(clock)
    status = {"batch_id": "b", "done": 0, "total": 1200, "created_at": 1000.0, "finished_at": None}
    assert rates.figures(status)["eta_seconds"] is None  # nothing done yet: no rate
    for step in range(1, 7):
        clock.now += 10
        shown = rates.figures({**status, "done": 100 * step})
    assert shown["rate_per_minute"] == 600.0 and shown["eta_seconds"] == 60
    ended = rates.figures({**status, "done": 1200, "finished_at": 1120.0})
    assert ended["rate_per_minute"] == 600.0 and ended["eta_seconds"] == 0


def test_pasted_lines_are_checked_with_their_numbers() -> None:
    text = f"{VALID}\n\n# comment\nnot-an-id\n{VALID.upper()}\n{OTHER}\n../etc/passwd\n"
    check = check_lines(text, "lines", 100)
    assert (check.valid, check.duplicates, check.invalid) == (2, 1, 2)
    assert [(p["line"], p["value"]) for p in check.problems] == [(4, "not-an-id"), (7, "../etc/passwd")]
    assert check.ids == [VALID, OTHER]


def test_csv_lines_keep_the_file_line_numbers() -> None:
    text = f"name,conversationId\na,{VALID}\nb,oops\n\"multi\nline\",{OTHER}\n"
    check = check_lines(text, "csv", 100)
    assert check.valid == 2 and [p["line"] for p in check.problems] == [3]
    with pytest.raises(InputError, match="no column"):
        check_lines("name,other\na,b\n", "csv", 100)
    with pytest.raises(InputError, match="at most 1"):
        check_lines(f"{VALID}\n{OTHER}\n", "lines", 1)


def test_a_named_column_and_json_lines_keep_their_line_numbers() -> None:
    good = "3b47a74f-a827-4166-ae62-f6ba6d7268ae"
    named = check_lines(f"queue,Conversation ID\nq,{good}\nq,oops\n", "csv", 100, "Conversation ID")
    assert named.valid == 1 and named.problems[0]["line"] == 3
    with pytest.raises(InputError, match="Conversation ID"):
        check_lines(f"conversationId\n{good}\n", "csv", 100, "Conversation ID")  # named, so only that column
    text = "\n".join([f'{{"conversation_id": "{good}"}}', "", '{"conversation_id": 5}', '"x"', "[" * 100_000, "{"])
    lines = check_lines(text, "jsonl", 100)
    assert lines.valid == 1 and [p["line"] for p in lines.problems] == [3, 4, 5, 6]
    assert check_lines(f'{{"key": "{good}"}}', "jsonl", 100, "key").valid == 1
