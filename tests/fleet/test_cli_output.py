"""Output is data, never control: text that callers chose (labels, sources, ids, error messages) prints inertly.

Issue 22: a batch label carrying terminal escapes and newlines, set over the intake, was printed raw by
``genesys-closer batches``: it could clear the screen and fake "ALL BATCHES FINISHED OK". Here the label is set over
the producer API and shown by the commands an operator runs, as a table and with ``--json``.
"""

from __future__ import annotations

import json

from celery import Celery

from genesys_closer.emulator.admin import EmulatorAdmin
from genesys_closer.producer.api import CloseClient
from genesys_closer.shared.names import TASK_NAME
from tests.fleet.conftest import cli
from tests.waiting import wait_until

SPOOF = "\x1b]0;x\x07\x1b[2J\nALL BATCHES FINISHED OK\r\n[bold green]:white_check_mark: \x9b2J\x7f"
RAW = ("\x1b", "\x07", "\x9b", "\x7f", "\r")


def squash(text: str) -> str:
    return "".join(char for char in text if char not in " \n│┃")


def assert_inert(printed: str) -> None:
    assert not [char for char in RAW if char in printed], repr(printed)
    assert not [line for line in printed.splitlines() if line.lstrip("│┃ ").startswith("ALL BATCHES")], printed
    assert "✅" not in printed  # an emoji code stays text


def test_a_label_with_escapes_prints_inertly(admin: EmulatorAdmin, client: CloseClient, redis_url: str) -> None:
    batch = client.close_many(admin.create(2), label=SPOOF, source=SPOOF)
    batch.wait(timeout=60)
    table = cli(redis_url, "batches")
    assert table.returncode == 0
    assert_inert(table.stdout)
    shown = squash(table.stdout)  # a table may wrap the cell over lines
    assert squash("\\x1b]0;x\\x07\\x1b[2J\\nALL BATCHES FINISHED OK\\r\\n[bold green]:white_check_mark:") in shown
    as_json = cli(redis_url, "--json", "batches")
    assert_inert(as_json.stdout)
    [row] = [json.loads(line) for line in as_json.stdout.splitlines()]
    assert row["label"] == SPOOF  # the data itself is intact: JSON escapes it, a parser gets it back
    for args in (["status", batch.id], ["--json", "status", batch.id], ["results", batch.id, "--format", "jsonl"]):
        run = cli(redis_url, *args)
        assert run.returncode == 0, run.stderr
        assert_inert(run.stdout + run.stderr)


def test_rejected_messages_print_inertly(client: CloseClient, redis_url: str) -> None:
    sent = Celery("someone-else", broker=redis_url).send_task(TASK_NAME, args=[SPOOF])
    wait_until(lambda: str(sent.id) in {str(r.get("task_id")) for r in client.rejected(100)}, timeout=60)
    for args in (["rejected"], ["--json", "rejected"], ["outcome", SPOOF], ["close", SPOOF]):
        run = cli(redis_url, *args)
        assert_inert(run.stdout + run.stderr)
    [line] = cli(redis_url, "close", SPOOF).stderr.splitlines()
    assert "invalid_id" in line
