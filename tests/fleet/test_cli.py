"""The `genesys-closer` command line against the shared fleet (in-process with typer's CliRunner; the real
console script runs in tests/e2e/test_cli.py)."""

from __future__ import annotations

import csv
import io
import json
from pathlib import Path

from genesys_closer.emulator.admin import EmulatorAdmin
from tests.fleet.conftest import cli


def test_close_prints_one_line_per_outcome(admin: EmulatorAdmin, redis_url: str) -> None:
    [open_one], [sms] = admin.create(1), admin.create(1, "sms")
    ok = cli(redis_url, "close", open_one)
    assert ok.returncode == 0 and f"{open_one}  closed" in ok.stdout
    mixed = cli(redis_url, "close", sms, "../etc/passwd")
    assert mixed.returncode == 1
    assert f"{sms}  not_web_messaging" in mixed.stdout and "invalid_id" in mixed.stderr
    as_json = cli(redis_url, "--json", "close", open_one)
    assert json.loads(as_json.stdout.strip())["outcome"] == "already_closed"


def test_bulk_plain_csv_jsonl_and_export(admin: EmulatorAdmin, redis_url: str,
                                         tmp_path: Path) -> None:
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
    assert all(r["outcome"] == "closed" and r["confirmed_by"] in {"analytics", "analytics+conversation"} for r in rows)
    by_analytics = [r for r in rows if r["confirmed_by"] == "analytics"]  # the rest: the sample, read live too
    # the PATCH plus its shares of a pre-check and a confirmation read: whole reads at worst (a read that carried
    # this item alone, as on a loaded machine); how small the shares get is bench/'s calls-per-close figure
    assert by_analytics and all(1 < float(r["api_calls"]) <= 3 for r in by_analytics)
    jsonl = cli(redis_url, "results", batch_id, "--format", "jsonl")
    assert len(jsonl.stdout.splitlines()) == 10
    listed = cli(redis_url, "batches")
    assert batch_id in listed.stdout and "ids.txt" in listed.stdout


def test_csv_export_neutralizes_formulas(admin: EmulatorAdmin, redis_url: str,
                                         tmp_path: Path) -> None:
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


def test_sweep_dry_run_and_run_with_paging(admin: EmulatorAdmin, redis_url: str) -> None:
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
    routes = stats["requests_by_route"]
    analytics_reads = routes["GET /api/v2/analytics/conversations/details"]
    assert 2 <= analytics_reads <= 10  # the confirmations are batched reads,
    # each verified by reading a sample of what it shows ended (ANALYTICS_VERIFY_SHARE: 2%, at least one per read)
    assert routes.get("GET /api/v2/conversations/messages/{conversationId}", 0) <= analytics_reads + 4
    assert stats["requests_by_route"]["PATCH /api/v2/conversations/messages/{conversationId}"] == 153


def test_sweep_idle_filter_reads_the_conversation(admin: EmulatorAdmin, redis_url: str) -> None:
    idle = admin.create(3, age_minutes=300, idle_minutes=120)
    busy = admin.create(2, age_minutes=300, idle_minutes=5)
    dry = cli(redis_url, "--json", "sweep", "--idle-minutes", "60", "--dry-run")
    candidates = [json.loads(x) for x in dry.stdout.splitlines() if '"candidate"' in x]
    assert {c["conversation_id"] for c in candidates if c["chosen"]} == set(idle)
    assert all("active" in c["reason"] for c in candidates if c["conversation_id"] in busy)
