"""The runbook in docs/operations.md, command by command, against the shared fleet."""

from __future__ import annotations

import re
import shlex
from pathlib import Path

from genesys_closer.emulator.admin import EmulatorAdmin
from genesys_closer.producer.api import CloseClient
from tests.fleet.conftest import cli

OPERATIONS = Path(__file__).resolve().parents[2] / "docs" / "operations.md"


def runbook_commands() -> list[str]:
    text = OPERATIONS.read_text()
    section = text[text.index("## Runbook"):]
    return re.findall(r"`(genesys-closer [^`]+)`", section)


def test_every_runbook_command_runs(admin: EmulatorAdmin, client: CloseClient, redis_url: str) -> None:
    commands = runbook_commands()
    assert len(commands) >= 6 and any("--policy participants" in c for c in commands)
    ids = admin.create(3)
    batch = client.close_many(ids, label="runbook")
    batch.wait(timeout=60)
    for command in commands:
        words = [batch.id if w == "BATCH" else ids[0] if w == "CONVERSATION" else w for w in shlex.split(command)]
        run = cli(redis_url, *words[1:])
        assert run.returncode in {0, 1}, (command, run.stdout, run.stderr)  # never a usage error (2)
        assert "No such option" not in run.stderr and "Traceback" not in run.stderr, command
