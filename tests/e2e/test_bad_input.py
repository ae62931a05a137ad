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

from genesys_closer.producer.api import CloseClient, InvalidBatch
from genesys_closer.shared.ids import InvalidConversationId
from tests.hostile_input import HOSTILE


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


def test_million_line_file_dry_run_is_streamed(tmp_path: Path, redis_url: str) -> None:
    source = tmp_path / "million.txt"
    with source.open("w") as out:
        for i in range(1_000_000):
            out.write(f"{i:08x}-0000-4000-8000-{i % 7:012x}\n" if i % 10 else f"bad-{i}\n")
    process = subprocess.Popen([sys.executable, "-m", "genesys_closer.producer.cli", "--redis-url", redis_url, "--json",
                                "bulk", str(source), "--dry-run"], stdout=subprocess.PIPE, text=True)
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
