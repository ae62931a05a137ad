"""A waiting batch, fed against flooded (issue 21 §3): ``close_many`` of N IDs on a Redis no worker consumes, as the
product does it (the IDs stored in the batch's feed, ``BATCH_IN_FLIGHT`` published), against publishing one message
per ID up front (what ``close_many`` did before, ``BatchWriter.publish`` over one connection), side by side in one
run. Prints seconds to return, broker messages held, Redis memory grown, and the time a cancel takes to stop
feeding. ``python -m bench.batch_feed [--ids N]``."""

from __future__ import annotations

import argparse
import sys
import tempfile
import time
import uuid
from pathlib import Path

import redis

from genesys_closer.config import load_producer_settings
from genesys_closer.emulator.stack import RedisServer
from genesys_closer.producer.api import CloseClient
from genesys_closer.worker.recovery.broker_scan import held_closes

IDS = 100_000


def _used(client: redis.Redis) -> int:
    return int(client.info("memory")["used_memory"])


def _held(client: redis.Redis, batch_id: str) -> int:
    return sum(1 for held in held_closes(client) if held.batch_id == batch_id)


def measure(ids: int = IDS) -> dict[str, float]:
    workdir = Path(tempfile.mkdtemp(prefix="genesys-closer-feed-bench-"))
    server = RedisServer(workdir / "redis").start()
    try:
        raw = redis.Redis.from_url(server.url)
        client = CloseClient(load_producer_settings(redis_url=server.url))
        figures: dict[str, float] = {"ids": ids, "in_flight": client.settings.batch_in_flight}

        before = _used(raw)
        started = time.perf_counter()
        batch = client.close_many(str(uuid.uuid4()) for _ in range(ids))
        figures["fed_seconds"] = time.perf_counter() - started
        figures["fed_messages"] = _held(raw, batch.id)
        figures["fed_mb"] = (_used(raw) - before) / 1e6
        started = time.perf_counter()
        batch.cancel()
        figures["cancel_seconds"] = time.perf_counter() - started
        figures["messages_after_cancel"] = _held(raw, batch.id)

        raw.flushall()
        before = _used(raw)
        flood = [str(uuid.uuid4()) for _ in range(ids)]
        writer = client.batches_writer
        started = time.perf_counter()
        staged = writer.stage(flood, options={})
        writer.publish(staged.batch_id, flood, {}, staged.queue)  # every item up front
        client.results.batches.mark_enqueued(staged.batch_id, ids)
        staged.lease.release()
        figures["flood_seconds"] = time.perf_counter() - started
        figures["flood_messages"] = _held(raw, staged.batch_id)
        figures["flood_mb"] = (_used(raw) - before) / 1e6
        return figures
    finally:
        server.stop()


def report_lines(figures: dict[str, float]) -> list[str]:
    """The benchmarks.md section for these figures."""
    return [
        "## 8. A waiting batch: fed, not flooded", "",
        f"`close_many` of {figures['ids']:,.0f} IDs on a Redis no worker consumes (`bench/batch_feed.py`): the "
        f"product stores the IDs in the batch's feed and publishes `BATCH_IN_FLIGHT` = {figures['in_flight']:.0f}; "
        "beside it, the same batch published one message per ID up front (what `close_many` did before).", "",
        "| | seconds to return | broker messages while it waits | Redis memory grown |", "|---|---|---|---|",
        f"| fed (the product) | {figures['fed_seconds']:.2f} s | {figures['fed_messages']:,.0f} | "
        f"{figures['fed_mb']:.1f} MB |",
        f"| every message up front | {figures['flood_seconds']:.2f} s | {figures['flood_messages']:,.0f} | "
        f"{figures['flood_mb']:.1f} MB |",
        f"| ratio fed / up front | {figures['fed_seconds'] / figures['flood_seconds']:.2f} | "
        f"{figures['fed_messages'] / figures['flood_messages']:.4f} | {figures['fed_mb'] / figures['flood_mb']:.2f} |",
        "", f"A cancel of the waiting batch returned in {figures['cancel_seconds'] * 1000:.0f} ms and nothing more "
        f"was published ({figures['messages_after_cancel']:,.0f} messages held after it, the ones already fed, "
        "which end `cancelled` when a worker takes them; a worker records the items never fed).", ""]


def problems(figures: dict[str, float]) -> list[str]:
    """Checks on ratios and counts of this run (never an absolute time)."""
    found = []
    if figures["fed_messages"] > figures["in_flight"]:
        found.append(f"fed batch holds {figures['fed_messages']:.0f} messages > BATCH_IN_FLIGHT")
    if figures["fed_seconds"] >= figures["flood_seconds"]:
        found.append("feeding returned no sooner than publishing every message")
    if figures["messages_after_cancel"] > figures["fed_messages"]:
        found.append("a cancelled batch was fed")
    return found


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(description=__doc__)
    parser.add_argument("--ids", type=int, default=IDS)
    args = parser.parse_args(argv)
    figures = measure(args.ids)
    print("\n".join(report_lines(figures)))
    found = problems(figures)
    if found:
        print("BENCHMARK CHECK FAILED: " + "; ".join(found), file=sys.stderr)
        return 1
    return 0


if __name__ == "__main__":
    sys.exit(main())
