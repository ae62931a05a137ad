"""Liveness: ``python -m genesys_closer.worker.ops.health [--hostname celery@HOST]``; exit 0 when the worker consumes.

A Celery worker on Redis can stay up, answer control pings, and yet stop taking tasks after broker reconnects.
This probe therefore sends a real task through the broker to the worker's own direct queue (``worker_direct``,
which workers consume before their other queues, so a long queue of batch items never delays it) and waits for
its answer. Exit status: 0 the worker consumed it; 1 it did not (stuck, frozen, or not consuming); 3 Redis is
unreachable, which says nothing about the worker: ``--broker-down-ok`` makes that 0, for a liveness check that
should restart only what a restart can mend (workers wait for Redis and reconnect by themselves).

``--beat-schedule PATH`` checks beat instead: beat writes its schedule file (``celery beat --schedule PATH``) at
least every ``BEAT_SYNC_SECONDS``, as it records the recovery checks it sends; older than ``--max-age`` (twice
that) means beat is stuck. Used by the compose healthchecks, the Kubernetes probes and the systemd liveness timer
(docs/operations.md#supervision).
"""

from __future__ import annotations

import argparse
import contextlib
import socket
import sys
import time
from enum import Enum
from pathlib import Path

from celery import Celery
from celery.utils.nodenames import worker_direct
from kombu.exceptions import OperationalError

from genesys_closer.shared.names import PROBE_TASK_NAME
from genesys_closer.worker.app import build_app

BEAT_SYNC_SECONDS = 180  # celery.beat.Scheduler.sync_every


class Probe(Enum):
    CONSUMING = 0
    NOT_CONSUMING = 1
    BROKER_UNREACHABLE = 3


def broker_answers(app: Celery, timeout_seconds: float) -> bool:
    with app.connection_for_write() as connection:
        try:
            connection.ensure_connection(max_retries=1, interval_start=0, interval_step=0, timeout=timeout_seconds)
        except (*connection.connection_errors, OperationalError):
            return False
    return True


def probe(hostname: str, timeout_seconds: float) -> Probe:
    app = build_app()
    if not broker_answers(app, timeout_seconds):
        return Probe.BROKER_UNREACHABLE
    result = app.send_task(PROBE_TASK_NAME, queue=worker_direct(hostname), expires=timeout_seconds)
    try:
        reply = result.get(timeout=timeout_seconds)
    except Exception:
        return Probe.NOT_CONSUMING
    finally:
        with contextlib.suppress(Exception):  # the answer (or its absence) is known; a failed clean-up changes nothing
            result.forget()
    return Probe.CONSUMING if isinstance(reply, dict) and reply.get("ok") else Probe.NOT_CONSUMING


def beat_schedule_age(schedule: Path, now: float) -> float | None:
    """Seconds since beat last wrote its schedule (``shelve`` may add a suffix: ``.db``, ``.dat``), or None."""
    written = [path.stat().st_mtime for path in schedule.parent.glob(f"{schedule.name}*") if path.is_file()]
    return now - max(written) if written else None


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--hostname", default=f"celery@{socket.gethostname()}", help="the worker's node name")
    parser.add_argument("--timeout", type=float, default=15.0)
    parser.add_argument("--broker-down-ok", action="store_true", help="exit 0 when Redis itself is unreachable")
    parser.add_argument("--beat-schedule", type=Path, help="check beat's schedule file instead of a worker")
    parser.add_argument("--max-age", type=float, default=2 * BEAT_SYNC_SECONDS, help="with --beat-schedule")
    args = parser.parse_args(argv)
    if args.beat_schedule is not None:
        age = beat_schedule_age(args.beat_schedule, time.time())
        alive = age is not None and age <= args.max_age
        print(f"beat: schedule {'missing' if age is None else f'written {age:.0f} s ago'}"
              f"{'' if alive else ' (NOT alive)'}")
        return 0 if alive else 1
    outcome = probe(args.hostname, args.timeout)
    if outcome is Probe.BROKER_UNREACHABLE:
        print(f"{args.hostname}: Redis unreachable (not this worker's fault)")
        return 0 if args.broker_down_ok else int(outcome.value)
    print(f"{args.hostname}: {'consuming' if outcome is Probe.CONSUMING else 'NOT consuming'}")
    return int(outcome.value)


if __name__ == "__main__":
    sys.exit(main())
