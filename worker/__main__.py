"""``python -m genesys_closer.worker worker|beat [options]``: Celery's own ``worker`` and ``beat`` commands, bound to
this package's app, without Celery's umbrella command line.

``celery -A genesys_closer.worker.app worker -c 4`` and ``python -m genesys_closer.worker worker -c 4`` run the same
click command with the same options (``--help`` lists them) and start the same worker. The umbrella command first
imports every other ``celery`` subcommand, the REPL behind ``celery shell`` and ``celery amqp`` (click_repl with
prompt_toolkit) and every installed plugin's command (Flower's, where Flower is installed): measured on a 2-core
machine (2026-12-02), 0.70 CPU-seconds from start to "ready" against 0.50 this way, and 0.2 s sooner ready. The
test suite, the demo and the benchmarks start their workers and beat this way; ``--detach`` is refused (it re-runs
``celery`` itself): run the worker under a supervisor (systemd, Kubernetes, compose), as ``deploy/`` does.
"""

from __future__ import annotations

import sys
from collections.abc import Sequence

USAGE = "usage: python -m genesys_closer.worker {worker|beat} [celery worker/beat options]  (--help after either)"
COMMANDS = ("worker", "beat")
DETACH = frozenset({"-D", "--detach"})


def main(argv: Sequence[str] | None = None) -> int:
    args = list(sys.argv[1:] if argv is None else argv)
    if not args or args[0] not in COMMANDS:
        print(USAGE, file=sys.stderr)
        return 2
    name, options = args[0], args[1:]
    if DETACH.intersection(options):
        print(f"python -m genesys_closer.worker {name}: --detach is not supported here; run it under a supervisor "
              f"(or use `celery -A genesys_closer.worker.app {name} --detach`)", file=sys.stderr)
        return 2
    from celery.bin.base import CLIContext

    if name == "worker":
        from celery.bin.worker import worker as command
    else:
        from celery.bin.beat import beat as command
    from genesys_closer.worker.app import app

    # As the umbrella runs it: its context (the app), and options from CELERY_<COMMAND>_* variables.
    context = CLIContext(app=app, no_color=None, workdir=None, quiet=False)
    command.main(args=options, prog_name=f"python -m genesys_closer.worker {name}", obj=context,
                 auto_envvar_prefix=f"CELERY_{name.upper()}")
    return 0  # not reached: click exits with the command's own code


if __name__ == "__main__":
    sys.exit(main())
