"""The ``genesys-closer`` console entry point: the producer's commands (they need only Redis) plus ``check``, which
needs the worker's Genesys settings and client. Composed here, above both layers, so that the producer never
imports the worker's Genesys client.

Installs sized to the role: the commands need the ``[cli]`` extra (typer, rich); ``check`` also needs the ``[worker]``
extra (requests, cryptography, tenacity), so it loads the Genesys client when it runs, and an install without it
gets one line saying what to install instead of a traceback."""

from __future__ import annotations

from pathlib import Path
from typing import Annotated, Any

import typer
from rich.table import Table

from genesys_closer.config.errors import ConfigError
from genesys_closer.config.settings import load_worker_settings
from genesys_closer.producer.cli import EXIT_NOT_ALL_SUCCEEDED, EXIT_OK, State, app, console
from genesys_closer.producer.cli import main as producer_main
from genesys_closer.producer.display import cell

MARKS = {True: "ok", False: "FAIL", None: "info"}


@app.command()
def check(
    ctx: typer.Context,
    env_file: Annotated[Path | None, typer.Option("--env-file", exists=True, dir_okay=False,
                                                  help="Read the worker's settings from this .env file.")] = None,
) -> None:
    """Day one: can this OAuth client close conversations in this org? Read-only: it gets a token, reads the allowed
    request rate, and probes each permission the configured policy needs on a conversation id that does not exist.

    Needs the worker's settings (GENESYS_CLIENT_ID, GENESYS_CLIENT_SECRET, GENESYS_ENVIRONMENT, CLOSE_POLICY...), not
    Redis. Exit status 0 only when a close can work; every problem comes with its fix.

    Example: genesys-closer check --env-file .env
    """
    try:  # the [worker] extra; loaded here so that the other commands run with the [cli] extra alone
        from genesys_closer.worker.ops.readiness import ready, run_checks
    except ModuleNotFoundError as exc:
        raise ConfigError(f"genesys-closer check drives the worker's Genesys client, which needs {exc.name}: "
                          "pip install 'genesys-closer[cli,worker]'") from exc
    state: State = ctx.obj
    overrides: dict[str, Any] = {}
    chosen = env_file or state.env_file
    if chosen:
        overrides["_env_file"] = str(chosen)
    checks = run_checks(load_worker_settings(**overrides))
    if state.json:
        for item in checks:
            state.emit({"check": item.name, "ok": item.ok, "detail": item.detail, "fix": item.fix})
    else:
        table = Table("check", "result", "detail", "fix")
        for item in checks:
            table.add_row(cell(item.name), MARKS[item.ok], cell(item.detail), cell(item.fix))  # Genesys' text
        console.print(table)
    good = ready(checks)
    if not state.json:
        console.print("ready: a close can work" if good else "not ready: fix the rows marked FAIL", markup=False)
    raise typer.Exit(EXIT_OK if good else EXIT_NOT_ALL_SUCCEEDED)


def main() -> None:
    """Console entry point (errors become one line and a documented exit status, as in ``producer.cli``)."""
    producer_main()


if __name__ == "__main__":
    main()
