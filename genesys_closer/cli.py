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
from genesys_closer.config.orgs import DEFAULT_ORG
from genesys_closer.config.settings import load_org_settings, load_worker_settings
from genesys_closer.producer.cli import EXIT_NOT_ALL_SUCCEEDED, EXIT_OK, State, app, console
from genesys_closer.producer.cli import main as producer_main
from genesys_closer.producer.display import cell

MARKS = {True: "ok", False: "FAIL", None: "info"}


@app.command()
def check(
    ctx: typer.Context,
    env_file: Annotated[Path | None, typer.Option("--env-file", exists=True, dir_okay=False,
                                                  help="Read the worker's settings from this .env file.")] = None,
    org: Annotated[list[str] | None, typer.Option("--org", help="Check this org (repeatable; default: the global "
                                                  "--org / ORG, else 'default').")] = None,
    every_org: Annotated[bool, typer.Option("--all", help="Check every org of the configuration (the GENESYS_* "
                                            "variables' 'default' and each org of ORGS_FILE).")] = False,
) -> None:
    """Day one: can this OAuth client close conversations in this org? Read-only: it gets a token, reads the allowed
    request rate, and probes each permission the configured policy needs on a conversation id that does not exist.

    Needs the worker's settings (GENESYS_CLIENT_ID, GENESYS_CLIENT_SECRET, GENESYS_ENVIRONMENT, CLOSE_POLICY, and
    ORGS_FILE for named orgs), not Redis. One table per org checked; exit status 0 only when a close can work in
    every org checked; every problem comes with its fix.

    Example: genesys-closer check --env-file .env --all
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
    base = load_worker_settings(**overrides)
    orgs = load_org_settings(base) if base.orgs_file else {DEFAULT_ORG: base}
    if every_org and org:
        raise ConfigError("check: give --org or --all, not both")
    names = list(orgs) if every_org else (org or [state.org or DEFAULT_ORG])
    unknown = [name for name in names if name not in orgs]
    if unknown:
        raise ConfigError(f"check: unknown org {unknown[0][:60]!r} (configured: {', '.join(orgs)})")
    good = True
    for name in dict.fromkeys(names):
        checks = run_checks(orgs[name], name)
        good = ready(checks) and good
        if state.json:
            for item in checks:
                state.emit({"org": name, "check": item.name, "ok": item.ok, "detail": item.detail, "fix": item.fix})
            continue
        table = Table("check", "result", "detail", "fix", title=f"org {cell(name)}")
        for item in checks:
            table.add_row(cell(item.name), MARKS[item.ok], cell(item.detail), cell(item.fix))  # Genesys' text
        console.print(table)
        console.print(f"org {name}: " + ("ready: a close can work" if ready(checks)
                                         else "not ready: fix the rows marked FAIL"), markup=False)
    raise typer.Exit(EXIT_OK if good else EXIT_NOT_ALL_SUCCEEDED)


def main() -> None:
    """Console entry point (errors become one line and a documented exit status, as in ``producer.cli``)."""
    producer_main()


if __name__ == "__main__":
    main()
