"""The demo: a private Redis, the Genesys Cloud emulator with 2,000 open web messaging conversations, two
Celery workers and Flower, all on loopback; then a bulk close with the product's own progress bar, a summary,
and everything stopped again. Run it with ``scripts/demo`` (``--keep`` leaves the stack up, seeds a few open
conversations of mixed kinds for a sweep, and prints how to reach it and what to try)."""

from __future__ import annotations

import argparse
import shutil
import signal
import sys
import time
from contextlib import ExitStack
from pathlib import Path
from types import FrameType

from rich.console import Console
from rich.table import Table

from genesys_closer.config import load_producer_settings
from genesys_closer.emulator.admin import EmulatorAdmin
from genesys_closer.emulator.stack import (
    EmulatorProcess,
    FlowerProcess,
    IntakeProcess,
    RedisServer,
    closer_env,
    start_workers,
)
from genesys_closer.producer.api import CloseClient
from genesys_closer.producer.cli import EXIT_DETACHED, State, follow

REPO = Path(__file__).resolve().parent.parent


def parse_args() -> argparse.Namespace:
    parser = argparse.ArgumentParser(description=__doc__)
    parser.add_argument("--conversations", type=int, default=2000)
    parser.add_argument("--rate-limit-per-minute", type=int, default=3000,
                        help="the emulator's limit and the fleet's (real Genesys: 300)")
    parser.add_argument("--workers", type=int, default=2)
    parser.add_argument("--concurrency", type=int, default=16)
    parser.add_argument("--keep", action="store_true", help="keep the stack running until Ctrl-C")
    return parser.parse_args()


def _stop_on_sigterm(signum: int, frame: FrameType | None) -> None:
    raise KeyboardInterrupt  # unwinds the ExitStack, which stops every process the demo started


EXPLORE = (("webmessaging", 12, 180), ("parked", 3, 180), ("sms", 3, 180), ("bot", 2, 180), ("stuck", 2, 180),
           ("restricted", 2, 180), ("webmessaging", 3, 20))


def seed_for_exploring(admin: EmulatorAdmin) -> None:
    """A few open conversations of mixed kinds, for a sweep to find (and to skip, with its reasons)."""
    for kind, count, age in EXPLORE:
        admin.create(count, kind, age_minutes=age)


def print_next_steps(console: Console, redis_url: str, emulator_url: str, batch_id: str, intake: IntakeProcess
                     ) -> None:
    """How to reach the running stack, and what to try against it."""
    cli = ".venv/bin/genesys-closer"
    lines = [
        f"# The operator console: {intake.url}/ui  (log in with the token {intake.token})",
        "#   Sweep (min age 60) previews the conversations just seeded, with reasons; 'close these N' runs them.",
        "# In another terminal, from this directory: the stack is yours to try.",
        f"export REDIS_URL='{redis_url}'",
        "# check needs the worker's Genesys settings (here: the emulator and its demo client)",
        f"export GENESYS_CLIENT_ID=demo-client GENESYS_CLIENT_SECRET=demo-secret GENESYS_API_URL={emulator_url} "
        f"GENESYS_LOGIN_URL={emulator_url}",
        f"{cli} check",
        f"{cli} sweep --min-age-minutes 60 --dry-run      # the mixed conversations just seeded, with reasons",
        f"{cli} sweep --min-age-minutes 60                # close the chosen ones",
        f"{cli} batches",
        f"{cli} results {batch_id} --format csv -o demo-results.csv",
        f"{cli} rejected",
    ]
    console.print("\n".join(lines), markup=False, soft_wrap=True)


def main() -> int:
    signal.signal(signal.SIGTERM, _stop_on_sigterm)
    args = parse_args()
    console = Console()
    workdir = REPO / ".demo"
    shutil.rmtree(workdir, ignore_errors=True)
    limit = args.rate_limit_per_minute
    with ExitStack() as stack:
        console.print("[bold]Starting[/bold] Redis, the Genesys Cloud emulator, "
                      f"{args.workers} workers and Flower (logs in .demo/)")
        redis_server = RedisServer(workdir / "redis").start()
        stack.callback(redis_server.stop)
        emulator = EmulatorProcess(["--conversations", str(args.conversations), "--rate-limit-per-minute",
                                    str(limit), "--seed", "7"], workdir / "logs").start()
        stack.callback(emulator.stop)
        env = closer_env(redis_server.url, emulator.base_url, GENESYS_RATE_LIMIT_PER_MINUTE=limit)
        workers = start_workers(args.workers, env, workdir / "logs", concurrency=args.concurrency)
        for worker in workers:
            stack.callback(worker.stop)
        flower = FlowerProcess(env, workdir / "logs").start()
        stack.callback(flower.stop)
        intake = IntakeProcess(env, workdir / "logs").start()  # the HTTP intake and the operator console (/ui)
        stack.callback(intake.stop)
        console.print(f"Console {intake.url}/ui (log in with the token {intake.token}): watch the batch there too")

        admin = emulator.admin
        ids = [c["id"] for c in admin.conversations(open="true")]
        client = CloseClient(load_producer_settings(redis_url=redis_server.url))
        console.print(f"Emulator {emulator.base_url}: {len(ids)} open web messaging conversations, "
                      f"limit {limit}/min per token. Closing them all:")
        started = time.monotonic()
        batch = client.close_many(ids, label="demo")
        if follow(State(redis_server.url, None, False), batch) == EXIT_DETACHED:
            console.print("Interrupted: stopping everything the demo started.")
            return EXIT_DETACHED
        elapsed = time.monotonic() - started

        status = batch.status()
        stats = admin.stats()
        times = [r["t"] for r in admin.requests()]
        busy = max(times) - min(times) if len(times) > 1 else 0.0
        achieved = (len(times) - 1) / busy * 60 if busy else 0.0
        calls = sum(r.api_calls for r in batch.results())
        table = Table(title="Demo summary", show_header=False)
        table.add_row("outcomes", ", ".join(f"{k}={v}" for k, v in sorted(status.counts.items())))
        table.add_row("open conversations left", str(stats["conversations_open"]))
        table.add_row("API calls per close", f"{calls / max(status.done, 1):.2f}")
        table.add_row("HTTP 429 responses", str(stats["responses_by_status"].get("429", 0)))
        table.add_row("token requests", str(stats["token_requests"]))
        table.add_row("elapsed (enqueue to last outcome)", f"{elapsed:.1f} s")
        table.add_row("achieved request rate", f"{achieved:.0f}/min = {achieved / limit:.1%} of the {limit}/min limit")
        table.add_row("Flower", f"{flower.url}  (user {flower.user}, password {flower.password})")
        table.add_row("Console", f"{intake.url}/ui  (log in with the token {intake.token})")
        console.print(table)
        if args.keep:
            seed_for_exploring(admin)
            print_next_steps(console, redis_server.url, emulator.base_url, batch.id, intake)
            console.print("Stack running; Ctrl-C stops it.")
            try:
                while True:
                    time.sleep(1)
            except KeyboardInterrupt:
                pass
        console.print("Stopping everything the demo started.")
    return 0 if status.counts.get("closed", 0) == len(ids) else 1


if __name__ == "__main__":
    sys.exit(main())
