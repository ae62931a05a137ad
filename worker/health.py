"""Worker liveness: ``python -m genesys_closer.worker.health [--hostname celery@HOST]``; exit 0 when it consumes.

A Celery worker on Redis can stay up, answer control pings, and yet stop taking tasks after broker reconnects.
This probe therefore sends a real task through the broker to the worker's own direct queue (``worker_direct``)
and waits for its result. Used as the compose healthcheck.
"""

from __future__ import annotations

import argparse
import socket
import sys

from celery.utils.nodenames import worker_direct

from genesys_closer.worker.app import build_app
from genesys_closer.worker.names import PROBE_TASK_NAME


def probe(hostname: str, timeout_seconds: float) -> bool:
    result = build_app().send_task(PROBE_TASK_NAME, queue=worker_direct(hostname), expires=timeout_seconds)
    try:
        reply = result.get(timeout=timeout_seconds)
    except Exception:
        return False
    finally:
        result.forget()
    return bool(isinstance(reply, dict) and reply.get("ok"))


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(description=__doc__)
    parser.add_argument("--hostname", default=f"celery@{socket.gethostname()}", help="the worker's node name")
    parser.add_argument("--timeout", type=float, default=15.0)
    args = parser.parse_args(argv)
    healthy = probe(args.hostname, args.timeout)
    print(f"{args.hostname}: {'consuming' if healthy else 'NOT consuming'}")
    return 0 if healthy else 1


if __name__ == "__main__":
    sys.exit(main())
