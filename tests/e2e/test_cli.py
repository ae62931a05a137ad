"""The `genesys-closer` command line, run as a real process against real workers, Redis and the emulator."""

from __future__ import annotations

import csv
import io
import json
import subprocess
import sys
import time
from pathlib import Path

import pytest

from genesys_closer.emulator import EmulatorConfig
from genesys_closer.emulator.admin import EmulatorAdmin
from tests.e2e.conftest import StartWorkers

CLI = [sys.executable, "-m", "genesys_closer.producer.cli"]


@pytest.fixture
def emulator_config() -> EmulatorConfig:
    return EmulatorConfig(consistency_delay_ms=50, seed=3, rate_limit_per_minute=100_000, max_interval_days=7)


def cli(redis_url: str, *args: str, stdin: str | None = None, timeout: float = 180) -> subprocess.CompletedProcess[str]:
    return subprocess.run([*CLI, "--redis-url", redis_url, *args], input=stdin, capture_output=True, text=True,
                          timeout=timeout, check=False)


def test_help_for_every_command(redis_url: str) -> None:
    for command in ("close", "bulk", "sweep", "status", "results", "cancel", "retry", "batches"):
        shown = cli(redis_url, command, "--help")
        assert shown.returncode == 0 and "Example" in shown.stdout, shown.stdout


def test_close_prints_one_line_per_outcome(start: StartWorkers, admin: EmulatorAdmin, redis_url: str) -> None:
    start(1, concurrency=2)
    [open_one], [sms] = admin.create(1), admin.create(1, "sms")
    ok = cli(redis_url, "close", open_one)
    assert ok.returncode == 0 and f"{open_one}  closed" in ok.stdout
    mixed = cli(redis_url, "close", sms, "../etc/passwd")
    assert mixed.returncode == 1
    assert f"{sms}  not_web_messaging" in mixed.stdout and "invalid_id" in mixed.stderr
    as_json = cli(redis_url, "--json", "close", open_one)
    assert json.loads(as_json.stdout.strip())["outcome"] == "already_closed"


def test_bulk_plain_csv_jsonl_and_export(start: StartWorkers, admin: EmulatorAdmin, redis_url: str,
                                         tmp_path: Path) -> None:
    start(2, concurrency=4)
    ids = admin.create(30)
    plain = tmp_path / "ids.txt"
    plain.write_text("# cleanup\n" + "\n".join(ids[:10]) + "\n\n" + ids[0] + "\n")
    run = cli(redis_url, "bulk", str(plain))
    assert run.returncode == 0, run.stderr
    batch_id = run.stdout.split()[1]
    assert "closed=10" in run.stdout and "duplicates dropped 1" in run.stdout
    table = tmp_path / "ids.csv"
    table.write_text("name,conversationId\n" + "".join(f"row{i},{cid}\n" for i, cid in enumerate(ids[10:20])))
    assert cli(redis_url, "bulk", str(table), "--column", "conversationId").returncode == 0
    lines = "".join(json.dumps({"conversation_id": cid}) + "\n" for cid in ids[20:])
    piped = cli(redis_url, "--json", "bulk", "-", "--format", "jsonl", stdin=lines)
    assert piped.returncode == 0
    assert json.loads(piped.stdout.strip().splitlines()[-1])["counts"] == {"closed": 10}
    assert admin.stats()["conversations_open"] == 0
    out = tmp_path / "results.csv"
    exported = cli(redis_url, "results", batch_id, "--format", "csv", "-o", str(out))
    assert exported.returncode == 0
    rows = list(csv.DictReader(out.open()))
    assert sorted(r["conversation_id"] for r in rows) == sorted(ids[:10])
    assert all(r["outcome"] == "closed" and r["api_calls"] == "3" for r in rows)
    jsonl = cli(redis_url, "results", batch_id, "--format", "jsonl")
    assert len(jsonl.stdout.splitlines()) == 10
    listed = cli(redis_url, "batches")
    assert batch_id in listed.stdout and "ids.txt" in listed.stdout


def test_bulk_dry_run_enqueues_nothing(redis_url: str, tmp_path: Path, admin: EmulatorAdmin) -> None:
    source = tmp_path / "ids.txt"
    good = "3b47a74f-a827-4166-ae62-f6ba6d7268ae"
    source.write_text(f"{good}\n{good.upper()}\nnot-an-id\n../x\n")
    run = cli(redis_url, "bulk", str(source), "--dry-run")
    assert run.returncode == 1  # invalid IDs found
    assert "1 valid unique IDs" in run.stdout and "2 invalid" in run.stdout and "1 duplicates" in run.stdout
    assert "item 3" in run.stdout and "item 4" in run.stdout
    assert cli(redis_url, "--json", "batches").stdout == ""


def test_csv_export_neutralizes_formulas(start: StartWorkers, admin: EmulatorAdmin, redis_url: str,
                                         tmp_path: Path) -> None:
    start(1, concurrency=2)
    [cid] = admin.create(1)
    hostile = '=HYPERLINK("http://evil.example","click")'
    source = tmp_path / "ids.txt"
    source.write_text(f"{cid}\n{hostile}\n+1+1\n@SUM(A1)\n")
    run = cli(redis_url, "bulk", str(source))
    batch_id = run.stdout.split()[1]
    exported = cli(redis_url, "results", batch_id, "--format", "csv").stdout
    cells = [cell for row in csv.reader(io.StringIO(exported)) for cell in row]
    assert all(not cell.startswith(("=", "+", "@", "-")) for cell in cells)
    assert "'" + hostile in cells


def test_sweep_dry_run_and_run_with_paging(start: StartWorkers, admin: EmulatorAdmin, redis_url: str) -> None:
    start(2, concurrency=4)
    day = 24 * 60
    old = admin.create(150, age_minutes=180)  # more than one page
    ancient = admin.create(3, age_minutes=10 * day)  # only reachable with a second, older interval
    admin.create(4, age_minutes=20)  # too young
    admin.create(2, "sms", age_minutes=180)
    admin.create(2, "disconnected", age_minutes=180)
    dry = cli(redis_url, "--json", "sweep", "--min-age-minutes", "60", "--lookback-days", "14", "--dry-run")
    assert dry.returncode == 0, dry.stderr
    events = [json.loads(line) for line in dry.stdout.splitlines()]
    candidates = [e for e in events if e["event"] == "candidate"]
    summary = next(e for e in events if e["event"] == "sweep")
    chosen = {c["conversation_id"] for c in candidates if c["chosen"]}
    assert chosen == set(old) | set(ancient)
    assert summary["pages"] >= 3 and summary["intervals"] >= 2
    assert len({c["conversation_id"] for c in candidates}) == len(candidates)  # duplicates removed
    assert admin.stats()["conversation_patches"] == 0
    text = cli(redis_url, "sweep", "--min-age-minutes", "60", "--lookback-days", "14", "--dry-run",
               "--max-count", "5")
    assert "over --max-count 5" in text.stdout and "5 chosen" in text.stdout.replace("\n", " ")
    admin.reset()
    run = cli(redis_url, "sweep", "--min-age-minutes", "60", "--lookback-days", "14")
    assert run.returncode == 0, run.stdout + run.stderr
    assert "closed=153" in run.stdout
    stats = admin.stats()
    assert stats["conversations_open"] == 4  # the young ones (sms are not web messaging)
    assert len(admin.conversations(kind="sms", open="true")) == 2
    assert stats["requests_by_route"]["GET /api/v2/conversations/messages/{conversationId}"] == 153  # confirm only
    assert stats["requests_by_route"]["PATCH /api/v2/conversations/messages/{conversationId}"] == 153


def test_sweep_idle_filter_reads_the_conversation(start: StartWorkers, admin: EmulatorAdmin, redis_url: str) -> None:
    start(1, concurrency=2)
    idle = admin.create(3, age_minutes=300, idle_minutes=120)
    busy = admin.create(2, age_minutes=300, idle_minutes=5)
    dry = cli(redis_url, "--json", "sweep", "--idle-minutes", "60", "--dry-run")
    candidates = [json.loads(x) for x in dry.stdout.splitlines() if '"candidate"' in x]
    assert {c["conversation_id"] for c in candidates if c["chosen"]} == set(idle)
    assert all("active" in c["reason"] for c in candidates if c["conversation_id"] in busy)


def test_status_cancel_and_retry(start: StartWorkers, admin: EmulatorAdmin, redis_url: str, tmp_path: Path) -> None:
    start(1, concurrency=2, genesys_rate_limit_per_minute=600, task_max_retries=0, retry_max_attempts=1)
    ids = admin.create(40)
    source = tmp_path / "ids.txt"
    source.write_text("\n".join(ids))
    started = cli(redis_url, "bulk", str(source), "--detach")
    batch_id = started.stdout.split()[1]
    time.sleep(2)
    cancelled = cli(redis_url, "cancel", batch_id)
    assert "[cancelled]" in cancelled.stdout
    watched = cli(redis_url, "status", batch_id, "--watch")
    assert "cancelled=" in watched.stdout and watched.returncode == 1
    # Failures: every API call answers 5xx and the workers may not retry.
    admin.faults(error_rate=1.0)
    failing = cli(redis_url, "bulk", str(source))
    failing_id = failing.stdout.split()[1]
    assert "failed=" in failing.stdout
    admin.faults(error_rate=0.0)
    retried = cli(redis_url, "retry", failing_id, "--outcome", "failed")
    assert retried.returncode == 0, retried.stdout + retried.stderr
    assert "closed=" in retried.stdout and "failed=" not in retried.stdout.splitlines()[-1]
    assert admin.stats()["conversations_open"] == 0
