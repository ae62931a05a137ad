"""Bad input at every boundary, through the shared fleet: valid items close, invalid ones make no request."""

from __future__ import annotations

import subprocess
import sys
from pathlib import Path

from celery import Celery

from genesys_closer.emulator.admin import EmulatorAdmin
from genesys_closer.producer.api import CloseClient
from tests.hostile_input import HOSTILE, TEXT_HOSTILE


def test_every_boundary_processes_valid_items_only(admin: EmulatorAdmin, client: CloseClient,
                                                   redis_url: str, tmp_path: Path) -> None:
    good = admin.create(6)
    # Producer API
    batch = client.close_many([good[0], *HOSTILE, good[1]])
    status = batch.wait(timeout=60)
    assert status.counts == {"closed": 2, "invalid_id": len(HOSTILE)}
    errors = [r.error for r in batch.results() if r.outcome.value == "invalid_id"]
    assert all(e and "invalid conversation id" in e for e in errors)
    # CLI file, through the installed console script (the real process, exit status included)
    source = tmp_path / "ids.txt"
    source.write_text("\n".join([good[2], *TEXT_HOSTILE, good[3]]) + "\n")
    script = Path(sys.executable).with_name("genesys-closer")
    run = subprocess.run([str(script), "--redis-url", redis_url, "bulk", str(source)],
                         capture_output=True, text=True, timeout=120, check=False)
    assert run.returncode == 1 and "closed=2" in run.stdout and f"invalid_id={len(TEXT_HOSTILE)}" in run.stdout
    # A foreign app with only Celery
    foreign = Celery("foreign", broker=redis_url, backend=redis_url)
    results = [foreign.send_task("worker.tasks.close_conversation", args=[value]) for value in HOSTILE]
    results += [foreign.send_task("worker.tasks.close_conversation", args=[cid]) for cid in good[4:]]
    outcomes = [r.get(timeout=60)["outcome"] for r in results]
    assert outcomes == ["invalid_id"] * len(HOSTILE) + ["closed", "closed"]
    # Not one request for an invalid item: every request names one of the valid conversations.
    log = admin.requests()
    named = {cid for r in log if r["route"] != "/oauth/token" for cid in r["conversation_id"].split(",")}
    assert named == set(good)
    assert sum(1 for r in log if r["method"] == "PATCH") == 6
    assert admin.stats()["conversations_open"] == 0
