"""A single close while a bulk batch runs, at Genesys' default 300 requests/min (issue: interactive work gets a
lane). Two workers x 8 against the emulator; the single closes go one at a time through ``close(wait=True)``,
first on an idle fleet, then while a 300-item batch fills the rate limit. Prints the medians side by side."""

from __future__ import annotations

import statistics
import sys
import tempfile
import time
from pathlib import Path

from genesys_closer.config import load_producer_settings
from genesys_closer.emulator.stack import EmulatorProcess, RedisServer, closer_env, start_workers
from genesys_closer.producer.api import CloseClient

LIMIT = 300


def single_closes(client: CloseClient, ids: list[str]) -> list[float]:
    latencies = []
    for cid in ids:
        started = time.perf_counter()
        client.close(cid, wait=True, timeout=120)
        latencies.append(time.perf_counter() - started)
    return latencies


def measure(singles: int = 8, batch: int = 300) -> dict[str, float]:
    workdir = Path(tempfile.mkdtemp(prefix="genesys-closer-lane-bench-"))
    redis_server = RedisServer(workdir / "redis").start()
    emulator = EmulatorProcess(["--rate-limit-per-minute", str(LIMIT), "--seed", "3"], workdir / "logs").start()
    workers = start_workers(2, closer_env(redis_server.url, emulator.base_url, GENESYS_RATE_LIMIT_PER_MINUTE=LIMIT),
                            workdir / "logs", concurrency=8, prefix="lane-")
    try:
        client = CloseClient(load_producer_settings(redis_url=redis_server.url))
        admin = emulator.admin
        idle = single_closes(client, admin.create(singles))
        running = client.close_many(admin.create(batch), label="bulk")
        deadline = time.monotonic() + 120
        while running.status().done < 10 and time.monotonic() < deadline:
            time.sleep(0.2)
        busy = single_closes(client, admin.create(singles))
        bulk_done = running.status().done
        running.cancel()
        return {"idle_median": statistics.median(idle), "busy_median": statistics.median(busy),
                "busy_max": max(busy), "singles": float(singles), "bulk_done_meanwhile": float(bulk_done)}
    finally:
        for worker in workers:
            worker.kill()
        emulator.stop()
        redis_server.stop()


if __name__ == "__main__":
    figures = measure()
    print(f"single close at {LIMIT}/min, 2 workers x 8: idle median {figures['idle_median']:.2f} s; during a "
          f"{300}-item batch median {figures['busy_median']:.2f} s (max {figures['busy_max']:.2f} s; "
          f"{figures['bulk_done_meanwhile']:.0f} bulk items done meanwhile)")
    sys.exit(0)
