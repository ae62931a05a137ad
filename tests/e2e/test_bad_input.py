"""Bad input at every boundary: a clear error per item, valid items still processed, no request for a bad one."""

from __future__ import annotations

import subprocess
import sys
import threading
import time
from pathlib import Path

import psutil
import pytest
import redis
from celery import Celery

from genesys_closer.emulator.admin import EmulatorAdmin
from genesys_closer.producer.api import CloseClient, InvalidBatch
from genesys_closer.worker.genesys.errors import InvalidConversationId
from tests.e2e.conftest import StartWorkers

HOSTILE: list[object] = [
    "../../api/v2/users/me", "..%2F..%2Fx", "%2e%2e%2f", "3b47a74f-a827-4166-ae62-f6ba6d7268ae/../x",
    "3b47a74f-a827-4166-ae62-f6ba6d7268ae%2F", "not-a-uuid", "", "   ", None, 42, 4.2, True, ["x"], {"id": 1},
    "x" * 10_000, "3b47a74f-a827-4166-ae62-f6ba6d7268a\u0435", "\uff13b47a74f-a827-4166-ae62-f6ba6d7268ae",
    '=HYPERLINK("http://evil")', "+cmd|' /C calc'!A0", "@SUM(1+1)", "\x00", "3b47a74f-a827-4166-ae62-f6ba6d7268ae\n1",
]
TEXT_HOSTILE = [h for h in HOSTILE if isinstance(h, str) and "\n" not in h and "\x00" not in h and h.strip()]


def test_producer_api_rejects_before_enqueueing(client: CloseClient, redis_url: str) -> None:
    raw = redis.Redis.from_url(redis_url)
    for value in HOSTILE:
        with pytest.raises(InvalidConversationId):
            client.close(value)  # type: ignore[arg-type]
    assert raw.llen("interactive") == 0
    with pytest.raises(InvalidBatch) as caught:
        client.close_many(["3b47a74f-a827-4166-ae62-f6ba6d7268ae", *HOSTILE], on_invalid="abort")
    assert caught.value.invalid_count == len(HOSTILE)
    assert raw.llen("bulk") == 0 and client.batches() == []


def test_every_boundary_processes_valid_items_only(start: StartWorkers, admin: EmulatorAdmin, client: CloseClient,
                                                   redis_url: str, tmp_path: Path) -> None:
    start(1, concurrency=4)
    good = admin.create(6)
    # Producer API
    batch = client.close_many([good[0], *HOSTILE, good[1]])
    status = batch.wait(timeout=60)
    assert status.counts == {"closed": 2, "invalid_id": len(HOSTILE)}
    errors = [r.error for r in batch.results() if r.outcome.value == "invalid_id"]
    assert all(e and "invalid conversation id" in e for e in errors)
    # CLI file
    source = tmp_path / "ids.txt"
    source.write_text("\n".join([good[2], *TEXT_HOSTILE, good[3]]) + "\n")
    run = subprocess.run([sys.executable, "-m", "genesys_closer.producer.cli", "--redis-url", redis_url, "bulk", str(source)],
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
    assert {r["conversation_id"] for r in log if r["route"] != "/oauth/token"} == set(good)
    assert sum(1 for r in log if r["method"] == "PATCH") == 6
    assert admin.stats()["conversations_open"] == 0


def test_million_line_file_dry_run_is_streamed(tmp_path: Path, redis_url: str) -> None:
    source = tmp_path / "million.txt"
    with source.open("w") as out:
        for i in range(1_000_000):
            out.write(f"{i:08x}-0000-4000-8000-{i % 7:012x}\n" if i % 10 else f"bad-{i}\n")
    process = subprocess.Popen([sys.executable, "-m", "genesys_closer.producer.cli", "--redis-url", redis_url, "--json", "bulk",
                                str(source), "--dry-run"], stdout=subprocess.PIPE, text=True)
    peak = 0
    watcher = psutil.Process(process.pid)

    def watch() -> None:
        nonlocal peak
        while process.poll() is None:
            try:
                peak = max(peak, watcher.memory_info().rss)
            except psutil.Error:
                return
            time.sleep(0.05)

    thread = threading.Thread(target=watch)
    thread.start()
    out, _ = process.communicate(timeout=300)
    thread.join()
    import json

    summary = json.loads(out.strip().splitlines()[-1])
    assert summary["valid"] == 900_000 and summary["invalid"] == 100_000 and summary["duplicates"] == 0
    assert len(summary["invalid_samples"]) == 20
    print(f"\nmillion-line dry run: peak RSS {peak / 2**20:.0f} MiB")
    assert peak < 400 * 2**20
