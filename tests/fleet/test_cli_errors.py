"""Every command's errors: one line on stderr and the README's exit status (2 usage or input, 3 unreachable).

Issue 22 found a 41-line traceback (``results B -o /nonexistent/x.csv``), "no such file" for a directory, exit 1 for
unknown batches and typer's 5-line boxes for usage errors. The table covers every command of ``genesys-closer``; the
commands run in this process against the shared fleet's Redis (or a port nothing listens on), as ``main`` runs them.
The rows against a Redis that is not there keep the client's five retries but wait 1 ms before the first instead of
50 ms (``RETRY_BASE_SECONDS``): the table proves the one line and the exit status, not the 3.1 s of backing off.
"""

from __future__ import annotations

import re
from pathlib import Path

import pytest

import genesys_closer.cli  # noqa: F401  (registers ``check`` on the same app)
from genesys_closer.producer import cli as cli_module
from genesys_closer.shared import redis_connection
from tests.fleet.conftest import cli
from tests.services import free_port

CID = "3b47a74f-a827-4166-ae62-f6ba6d7268ae"
NO_BATCH = "f" * 32
USAGE, UNREACHABLE = 2, 3
DOWN = "down"  # the row runs with a Redis URL nothing answers

# (command and arguments, expected exit status, pattern of the one stderr line)
TABLE: list[tuple[list[str], int, str]] = [
    ([], USAGE, r"^error: Missing command"),
    (["explode"], USAGE, r"^error: No such command 'explode'"),
    (["--no-such-option", "batches"], USAGE, r"^error: No such option: --no-such-option"),
    (["--env-file", "/nonexistent/.env", "batches"], USAGE, r"^error: Invalid value for '--env-file'"),
    (["close"], USAGE, r"^error: Missing argument"),
    (["close", CID, "--timeout", "soon"], USAGE, r"^error: Invalid value for '--timeout'"),
    (["close", CID, "--policy", "explode"], USAGE, r"^error: Invalid value for '--policy'"),
    (["bulk"], USAGE, r"^error: Missing argument"),
    (["bulk", "/nonexistent/ids.txt"], USAGE, r"^error: no such file: /nonexistent/ids.txt$"),
    (["bulk", "{tmp}"], USAGE, r"^error: .* is a directory, not a file of IDs$"),
    (["bulk", "/dev/null"], USAGE, r"^error: /dev/null holds no conversation IDs$"),
    (["bulk", "{empty}"], USAGE, r"^error: .*empty.txt holds no conversation IDs$"),
    (["bulk", "{ids}", "--format", "yaml"], USAGE, r"^error: "),
    (["sweep", "--min-age-minutes", "old"], USAGE, r"^error: Invalid value for '--min-age-minutes'"),
    (["sweep", "--policy", "explode"], USAGE, r"^error: Invalid value for '--policy'"),
    (["outcome"], USAGE, r"^error: Missing argument"),
    (["outcome", "not-a-uuid"], USAGE, r"^error: .*not-a-uuid"),
    (["rejected", "--limit", "many"], USAGE, r"^error: Invalid value for '--limit'"),
    (["status"], USAGE, r"^error: Missing argument"),
    (["status", NO_BATCH], USAGE, rf"^error: no batch '{NO_BATCH}'"),
    (["status", "x\x1b[2Jy"], USAGE, r"^error: a batch id is 32 .*; got 'x\\x1b\[2Jy'$"),  # echoed inertly
    (["results"], USAGE, r"^error: Missing argument"),
    (["results", NO_BATCH], USAGE, r"^error: no batch"),
    (["results", NO_BATCH, "--format", "xml"], USAGE, r"^error: --format must be csv or jsonl$"),
    (["results", "{batch}", "-o", "/nonexistent/x.csv"], USAGE,
     r"^error: cannot write /nonexistent/x.csv: No such file or directory$"),
    (["results", "{batch}", "-o", "{tmp}"], USAGE, r"^error: cannot write .*: Is a directory$"),
    (["results", "{batch}", "--outcome", "great"], USAGE, r"^error: unknown outcome 'great'"),
    (["cancel"], USAGE, r"^error: Missing argument"),
    (["cancel", NO_BATCH], USAGE, r"^error: no batch"),
    (["retry"], USAGE, r"^error: Missing argument"),
    (["retry", NO_BATCH], USAGE, r"^error: no batch"),
    (["retry", "{batch}", "--outcome", "great"], USAGE, r"^error: unknown outcome 'great'"),
    (["batches", "--limit", "many"], USAGE, r"^error: Invalid value for '--limit'"),
    (["serve", "--port", "http"], USAGE, r"^error: Invalid value for '--port'"),
    (["serve"], USAGE, r"^error: .*INTAKE_TOKENS"),
    (["check", "--env-file", "{badenv}"], USAGE, r"^error: .*GENESYS_RATE_LIMIT_PER_MINUTE"),
    (["check", "--env-file", "/nonexistent/.env"], USAGE, r"^error: Invalid value for '--env-file'"),
    # Redis unreachable: every command reaches Redis through the same client (its first use pings), so three rows
    ([DOWN, "bulk", "{ids}"], UNREACHABLE, r"^cannot reach Redis: ConnectionError"),
    ([DOWN, "batches"], UNREACHABLE, r"^cannot reach Redis"),
    ([DOWN, "sweep", "--dry-run"], UNREACHABLE, r"^cannot reach Redis"),
]


def test_the_table_covers_every_command() -> None:
    commands = {info.name or (info.callback.__name__ if info.callback else "")
                for info in cli_module.app.registered_commands}
    covered = {word for args, _, _ in TABLE for word in args[:2] if word in commands}
    assert commands == covered


@pytest.mark.parametrize(("args", "status", "pattern"), TABLE, ids=[" ".join(row[0])[:60] for row in TABLE])
def test_every_error_is_one_line_with_its_exit_status(redis_url: str, tmp_path: Path, monkeypatch: pytest.MonkeyPatch,
                                                      client: object, args: list[str], status: int,
                                                      pattern: str) -> None:
    monkeypatch.delenv("INTAKE_TOKENS", raising=False)
    monkeypatch.delenv("INTAKE_BASIC_AUTH", raising=False)
    url = redis_url
    if args[:1] == [DOWN]:
        url, args = f"redis://127.0.0.1:{free_port()}/0", args[1:]
        monkeypatch.setattr(redis_connection, "RETRY_BASE_SECONDS", 0.001)  # still RETRIES retries (the docstring)
    (tmp_path / "ids.txt").write_text(CID + "\n")
    (tmp_path / "empty.txt").write_text("")
    (tmp_path / "bad.env").write_text("GENESYS_RATE_LIMIT_PER_MINUTE=0\n")
    batch = ""
    if "{batch}" in args:
        from genesys_closer.producer.api import CloseClient

        assert isinstance(client, CloseClient)
        batch = client.close_many(["not-a-uuid"], label="invalid only").id  # an existing batch, no Genesys call
    filled = [a.replace("{tmp}", str(tmp_path)).replace("{empty}", str(tmp_path / "empty.txt"))
              .replace("{ids}", str(tmp_path / "ids.txt"))
              .replace("{batch}", batch).replace("{badenv}", str(tmp_path / "bad.env")) for a in args]
    run = cli(url, *filled)
    assert run.returncode == status, (run.stdout, run.stderr)
    lines = run.stderr.strip().splitlines()
    assert len(lines) == 1, run.stderr
    assert re.search(pattern, lines[0]), lines[0]
    assert "Traceback" not in run.stdout + run.stderr

