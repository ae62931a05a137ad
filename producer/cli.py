"""``genesys-closer``: the command line. A thin shell over ``producer.api``; it needs only Redis."""

from __future__ import annotations

import itertools
import os
import shutil
import sys
import tempfile
import time
from collections.abc import Iterable, Iterator, Sequence
from pathlib import Path
from typing import Annotated, Any

import redis
import typer
from rich.console import Console
from rich.progress import BarColumn, MofNCompleteColumn, Progress, TextColumn, TimeElapsedColumn, TimeRemainingColumn
from rich.table import Column, Table

from genesys_closer.config.errors import CloserError, ConfigError
from genesys_closer.config.settings import ClosePolicy, load_producer_settings
from genesys_closer.producer.api import Batch, BatchNotFound, CloseClient
from genesys_closer.producer.display import cell, inert, json_line
from genesys_closer.producer.export import write_csv, write_jsonl
from genesys_closer.producer.inputs import FORMATS, InputError, read_ids
from genesys_closer.shared.ids import InvalidConversationId
from genesys_closer.shared.outcomes import CloseResult, Outcome
from genesys_closer.shared.stores.batch_store import BatchStatus

EXIT_OK = 0
EXIT_NOT_ALL_SUCCEEDED = 1
EXIT_USAGE = 2
EXIT_UNREACHABLE = 3
EXIT_DETACHED = 130
EXIT_CODES_HELP = ("Exit status: 0 every item succeeded (closed or already_closed); 1 some item did not; "
                   "2 usage or input error; 3 Redis or the workers unreachable; 130 detached with Ctrl-C.")



class OneLineErrors(typer.core.TyperGroup):
    """Usage errors as one line (``error: ...``, exit status 2) instead of click's usage block or typer's box."""

    def main(self, args: Sequence[str] | None = None, prog_name: str | None = None, complete_var: str | None = None,
             standalone_mode: bool = True, windows_expand_args: bool = True, **extra: Any) -> Any:
        try:
            code = super().main(args, prog_name, complete_var, standalone_mode=False,
                                windows_expand_args=windows_expand_args, **extra)
        except typer.TyperException as exc:  # typer's click errors (usage, bad parameter, no such command)
            if type(exc).__name__ == "NoArgsIsHelpError":
                exc.show()  # type: ignore[attr-defined]  # run without arguments: the help text
            else:
                ctx = getattr(exc, "ctx", None)
                command = ctx.command_path if ctx is not None else "genesys-closer"
                message = exc.format_message()
                errors.print(f"error: {inert(message)} (see '{inert(command)} --help')", markup=False)
            code = EXIT_USAGE
        except typer.Abort:
            errors.print("aborted", markup=False)
            code = EXIT_DETACHED
        if not standalone_mode:
            return code
        sys.exit(code if isinstance(code, int) else EXIT_OK)


app = typer.Typer(
    name="genesys-closer",
    cls=OneLineErrors,
    help="Close Genesys Cloud web messaging conversations through the genesys-closer workers.\n\n"
    "Only REDIS_URL is needed here: the workers hold the Genesys credentials.\n\n" + EXIT_CODES_HELP,
    no_args_is_help=True,
    add_completion=False,
    pretty_exceptions_enable=False,
)
# Data is printed with markup=False and through ``display.inert``/``cell``; emoji codes (":warning:") stay text.
console = Console(width=None if sys.stdout.isatty() else 200, emoji=False)  # piped output is not cut at 80 columns
errors = Console(stderr=True, soft_wrap=True, emoji=False)  # one error, one line, whatever the width


class State:
    def __init__(self, redis_url: str | None, env_file: Path | None, as_json: bool, org: str | None = None) -> None:
        self.org = org
        self.redis_url = redis_url
        self.env_file = env_file
        self.json = as_json
        self._client: CloseClient | None = None

    @property
    def client(self) -> CloseClient:
        if self._client is None:
            overrides: dict[str, Any] = {}
            if self.redis_url:
                overrides["redis_url"] = self.redis_url
            if self.env_file:
                overrides["_env_file"] = str(self.env_file)
            client = CloseClient(load_producer_settings(**overrides), org=self.org)
            client.redis.ping()  # unreachable is said at once, before Celery's own reconnect loops (sweep: 19 s)
            self._client = client
        return self._client

    def emit_all(self, rows: Iterable[dict[str, Any]]) -> bool:
        """With --json, emit every row and say so; without, emit nothing (the caller prints a table)."""
        if not self.json:
            return False
        for row in rows:
            self.emit(row)
        return True

    def emit(self, data: dict[str, Any]) -> None:
        print(json_line(data), flush=True)  # one object per line, control characters escaped (display.json_line)


@app.callback()
def main_options(
    ctx: typer.Context,
    redis_url: Annotated[str | None, typer.Option("--redis-url", envvar="REDIS_URL",
                                                  help="Redis of the genesys-closer workers.")] = None,
    env_file: Annotated[Path | None, typer.Option("--env-file", exists=True, dir_okay=False,
                                                  help="Read settings from this .env file.")] = None,
    as_json: Annotated[bool, typer.Option("--json", help="Machine-readable output, one JSON object per line.")] = False,
    org: Annotated[str | None, typer.Option("--org", envvar="ORG", help="The Genesys org every command acts for "
                                            "(its closes, batches, sweeps and records); default: 'default'.")] = None,
) -> None:
    ctx.obj = State(redis_url, env_file, as_json, org)


def _state(ctx: typer.Context) -> State:
    state: State = ctx.obj
    return state


def _options(policy: ClosePolicy | None, allow_other_types: bool) -> dict[str, Any]:
    options: dict[str, Any] = {}
    if policy is not None:
        options["policy"] = policy.value
    if allow_other_types:
        options["allow_other_message_types"] = True
    return options


PolicyOption = Annotated[ClosePolicy | None, typer.Option(
    "--policy", help="When the PATCH does not close everyone: fail, participants, or teardown (see README).")]
AllowOption = Annotated[bool, typer.Option("--allow-other-types", help="Also close sms/whatsapp/open conversations.")]
DetachOption = Annotated[bool, typer.Option("--detach", help="Start and return at once; follow with 'status --watch'.")]
LimitOption = Annotated[int, typer.Option(help="How many, newest first.")]


def _outcome_line(result: CloseResult) -> str:
    detail = f" ({inert(result.error)})" if result.error else ""
    return f"{inert(result.conversation_id)}  {result.outcome.value}  calls={result.api_calls}{detail}"


@app.command()
def close(
    ctx: typer.Context,
    conversation_ids: Annotated[list[str], typer.Argument(help="Conversation IDs (UUIDs).")],
    timeout: Annotated[float, typer.Option(help="Seconds to wait for each outcome.")] = 120.0,
    policy: PolicyOption = None,
    allow_other_types: AllowOption = False,
) -> None:
    """Close conversations now (interactive queue), wait, and print one line per outcome.

    Exit status 1 if any did not end closed or already_closed.

    Example: genesys-closer close 3b47a74f-a827-4166-ae62-f6ba6d7268ae
    """
    state = _state(ctx)
    ok = True
    pending: list[tuple[str, str]] = []
    for raw in conversation_ids:
        try:
            pending.append((raw, str(state.client.close(raw, **_options(policy, allow_other_types)))))
        except InvalidConversationId as exc:
            ok = False
            if state.json:
                state.emit({"conversation_id": raw[:100], "outcome": "invalid_id", "error": str(exc)})
            else:
                errors.print(f"{inert(raw[:100])}  invalid_id ({inert(exc)})", markup=False)
    for raw, task_id in pending:
        try:
            result = state.client.result(task_id, timeout=timeout)
        except TimeoutError:
            shown = inert(raw[:100])
            errors.print(f"{shown}  queued, no outcome after {timeout:g} s (no worker running?); it runs when a "
                         f"worker takes it: follow with 'genesys-closer outcome {shown}'", markup=False)
            raise typer.Exit(EXIT_UNREACHABLE) from None
        ok &= result.outcome.succeeded
        state.emit(result.as_dict()) if state.json else console.print(_outcome_line(result), markup=False)
    raise typer.Exit(0 if ok else EXIT_NOT_ALL_SUCCEEDED)


def _counts_text(counts: dict[str, int]) -> str:
    return " ".join(f"{inert(name)}={n}" for name, n in sorted(counts.items())) or "-"


def follow(state: State, batch: Batch) -> int:
    """Show live progress until the batch finishes; Ctrl-C detaches (the batch keeps running)."""
    try:
        if state.json:
            status = batch.wait(poll_seconds=2.0, progress=lambda s: None if s.finished else state.emit(
                {"event": "progress", **s.as_dict()}))
        else:
            status = _follow_with_bar(batch)
    except KeyboardInterrupt:
        errors.print(f"\nDetached; batch {inert(batch.id)} keeps running. Re-attach with:\n"
                     f"  genesys-closer status {inert(batch.id)} --watch", markup=False)
        return EXIT_DETACHED
    _print_status(state, status.as_dict())
    return EXIT_OK if status.unsuccessful == 0 else EXIT_NOT_ALL_SUCCEEDED


def _follow_with_bar(batch: Batch) -> BatchStatus:
    columns = (TextColumn("{task.fields[label]}", markup=False), BarColumn(), MofNCompleteColumn(),
               TextColumn("{task.fields[rate]}/min"), TimeElapsedColumn(), TextColumn("ETA"),
               TimeRemainingColumn(), TextColumn("{task.fields[counts]}", markup=False))
    first: list[tuple[int, float]] = []
    with Progress(*columns, console=console, transient=False) as progress:
        bar = progress.add_task("batch", total=None, label=inert(batch.id[:8]), rate="-", counts="-")

        def show(status: BatchStatus) -> None:
            if not first:
                first.append((status.done, time.monotonic()))
            done0, time0 = first[0]
            elapsed = time.monotonic() - time0
            rate = (status.done - done0) / elapsed * 60 if elapsed > 1 else 0.0
            progress.update(bar, completed=status.done, total=status.total, rate=f"{rate:.0f}",
                            counts=_counts_text(status.counts))

        return batch.wait(poll_seconds=0.5, progress=show)


def _print_status(state: State, data: dict[str, Any]) -> None:
    if state.json:
        state.emit(data)
        return
    finished = data.get("finished_at")
    took = f", took {finished - data['created_at']:.1f} s" if finished else ""
    console.print(f"batch {inert(data['batch_id'])} [{inert(data['state'])}] {data['done']}/{data['total']} "
                  f"done{took}; "
                  f"{_counts_text(data['counts'])}" + (f"; duplicates dropped {data['duplicates']}"
                                                        if data.get("duplicates") else "")
                  + (f"; {inert(data['reason'])}" if data.get("reason") else ""), markup=False)


def _open_source(source: str) -> Iterator[Any]:
    if source == "-":
        yield sys.stdin
        return
    path = Path(source)
    if path.is_dir():
        raise InputError(f"{source} is a directory, not a file of IDs")
    if not path.exists():
        raise InputError(f"no such file: {source}")
    try:  # a regular file, a pipe or a device (``bulk <(cmd)``, /dev/stdin); an empty one is refused by read_ids
        stream = path.open(encoding="utf-8-sig", newline="")
    except OSError as exc:
        raise InputError(f"cannot read {source}: {exc.strerror or exc}") from None
    with stream:
        yield stream


@app.command()
def bulk(
    ctx: typer.Context,
    source: Annotated[str, typer.Argument(help="File of IDs, or - for standard input.")],
    fmt: Annotated[str, typer.Option("--format", help=f"Input format: {', '.join(FORMATS)}.")] = "auto",
    column: Annotated[str | None, typer.Option(help="CSV column / JSON key holding the ID.")] = None,
    dry_run: Annotated[bool, typer.Option("--dry-run", help="Validate and count only; enqueue nothing.")] = False,
    label: Annotated[str, typer.Option(help="A label shown in 'batches'.")] = "",
    policy: PolicyOption = None,
    allow_other_types: AllowOption = False,
    detach: DetachOption = False,
) -> None:
    """Start a batch from a file: plain lines, CSV with a column name, or JSON Lines; show live progress.

    Invalid IDs are reported per item (outcome invalid_id) and the valid ones still run; duplicates are dropped.
    Ctrl-C detaches without cancelling.

    Examples:
      genesys-closer bulk ids.txt
      genesys-closer bulk export.csv --column conversationId --dry-run
      cat ids.jsonl | genesys-closer bulk - --format jsonl --label "load-test cleanup"
    """
    state = _state(ctx)
    for stream in _open_source(source):
        ids = _not_empty(read_ids(stream, fmt=fmt, column=column, name=source), source)
        if dry_run:
            raise typer.Exit(_dry_run(state, ids))
        batch = state.client.close_many(ids, label=label or Path(source).name, source=source,
                                        options=_options(policy, allow_other_types))
    if state.json:
        state.emit({"event": "started", "batch_id": batch.id, **batch.status().as_dict()})
    else:
        console.print(f"batch {batch.id} started ({batch.status().total} items)")
    if detach:
        raise typer.Exit(0)
    raise typer.Exit(follow(state, batch))


def _not_empty(ids: Iterator[object], source: str) -> Iterator[object]:
    """``ids``, or an input error when the source holds nothing at all (an empty file, /dev/null)."""
    first = next(ids, _NOTHING)
    if first is _NOTHING:
        raise InputError(f"{'standard input' if source == '-' else inert(source)} holds no conversation IDs")
    return itertools.chain([first], ids)


_NOTHING = object()


def _dry_run(state: State, ids: Iterator[object]) -> int:
    check = state.client.check_ids(ids)
    if state.json:
        state.emit(check.as_dict())
    else:
        console.print(f"dry run: {check.valid} valid unique IDs would be enqueued; {check.invalid} invalid; "
                      f"{check.duplicates} duplicates dropped", markup=False)
        for sample in check.samples:
            console.print(f"  {inert(sample)}", markup=False)
    return EXIT_OK if check.invalid == 0 else EXIT_NOT_ALL_SUCCEEDED


@app.command()
def sweep(
    ctx: typer.Context,
    min_age_minutes: Annotated[float, typer.Option(help="Only conversations at least this old.")] = 60.0,
    idle_minutes: Annotated[float | None, typer.Option(
        help="Only conversations with no message from either side for this long (reads each candidate).")] = None,
    queue_id: Annotated[list[str] | None, typer.Option("--queue-id", help="Only these queues (repeatable).")] = None,
    started_after: Annotated[str | None, typer.Option(help="ISO-8601: started at or after.")] = None,
    started_before: Annotated[str | None, typer.Option(help="ISO-8601: started before.")] = None,
    skip_connected_agent: Annotated[bool, typer.Option(help="Skip conversations an agent is still on.")] = False,
    max_count: Annotated[int | None, typer.Option(help="Close at most this many.")] = None,
    lookback_days: Annotated[float, typer.Option(help="How far back to search (at most 90 days).")] = 30.0,
    include_parked: Annotated[bool, typer.Option(
        "--include-parked", help="Also close conversations an agent parked (set aside on purpose).")] = False,
    dry_run: Annotated[bool, typer.Option("--dry-run", help="List candidates with reasons; close nothing.")] = False,
    timeout: Annotated[float, typer.Option(help="Seconds to wait for the sweep query.")] = 900.0,
    policy: PolicyOption = None,
    detach: DetachOption = False,
) -> None:
    """Find open web messaging conversations (analytics details query) and close the chosen ones.

    The query runs on a worker (it needs Genesys credentials); every page and interval is read and duplicates
    are removed. Sweep closes skip the first read, so each costs 2 API calls (3 with --idle-minutes).

    Examples:
      genesys-closer sweep --min-age-minutes 120 --dry-run
      genesys-closer sweep --idle-minutes 60 --queue-id 6a1c2d3e-0000-4000-8000-00000000a11e --max-count 500
    """
    state = _state(ctx)
    filters = {"min_age_minutes": min_age_minutes, "idle_minutes": idle_minutes, "queue_ids": queue_id or [],
               "started_after": started_after, "started_before": started_before,
               "skip_connected_agent": skip_connected_agent, "max_count": max_count, "lookback_days": lookback_days,
               "include_parked": include_parked}
    request = state.client.sweep(filters, dry_run=dry_run, options=_options(policy, False))
    if not state.json:
        console.print(f"sweep {request.id} queued; waiting for a worker to run the query...")
    try:
        summary = request.wait(timeout=timeout)
    except Exception as exc:
        if type(exc).__name__ != "TimeoutError":
            raise
        errors.print(f"sweep {request.id} not answered after {timeout:g} s: is a worker running?")
        raise typer.Exit(EXIT_UNREACHABLE) from None
    if "error" in summary or "skipped" in summary:
        errors.print(f"error: {inert(summary.get('error') or summary.get('skipped'))}", markup=False)
        raise typer.Exit(EXIT_USAGE if "error" in summary else EXIT_NOT_ALL_SUCCEEDED)
    if dry_run:
        _print_candidates(state, request.candidates())
    if state.json:
        state.emit({"event": "sweep", **summary})
    else:
        console.print(f"{inert(summary['candidates'])} candidates, {inert(summary['chosen'])} chosen "
                      f"({inert(summary['pages'])} pages over {inert(summary['intervals'])} intervals, "
                      f"{inert(summary['duplicates_dropped'])} duplicates dropped)", markup=False)
    if dry_run or not summary.get("batch_id"):
        raise typer.Exit(0)
    batch = state.client.batch(summary["batch_id"])
    if detach:
        console.print(f"batch {inert(batch.id)} started", markup=False)
        raise typer.Exit(0)
    raise typer.Exit(follow(state, batch))


def _print_candidates(state: State, candidates: Iterator[dict[str, Any]]) -> None:
    table = Table(Column("conversation", no_wrap=True), "decision", "started", "reason") if not state.json else None
    for item in candidates:
        if table is None:
            state.emit({"event": "candidate", **item})
        else:
            table.add_row(cell(item.get("conversation_id")), "close" if item.get("chosen") else "skip",
                          cell(item.get("started")), cell(item.get("reason")))
    if table is not None:
        console.print(table)


@app.command()
def outcome(
    ctx: typer.Context,
    conversation_id: Annotated[str, typer.Argument(help="Conversation ID (UUID).")],
) -> None:
    """Show the latest outcome recorded for a conversation (exit 1 when there is none yet or it did not succeed).

    Example: genesys-closer outcome 3b47a74f-a827-4166-ae62-f6ba6d7268ae
    """
    state = _state(ctx)
    result = state.client.outcome(conversation_id)
    if result is None:
        errors.print(f"{inert(conversation_id[:100])}  no outcome recorded (queued, running, or older than the "
                     "retention)", markup=False)
        raise typer.Exit(EXIT_NOT_ALL_SUCCEEDED)
    state.emit(result.as_dict()) if state.json else console.print(_outcome_line(result), markup=False)
    raise typer.Exit(EXIT_OK if result.outcome.succeeded else EXIT_NOT_ALL_SUCCEEDED)


@app.command()
def rejected(
    ctx: typer.Context,
    limit: LimitOption = 20,
) -> None:
    """List the most recent messages the workers refused before running them (outcome invalid_request), with why.

    Example: genesys-closer rejected --limit 5
    """
    state = _state(ctx)
    rows = state.client.rejected(limit)
    if state.emit_all(rows):
        return
    table = Table(Column("task", no_wrap=True), "conversation", "outcome", "reason", "at")
    for row in rows:
        at = time.strftime("%Y-%m-%d %H:%M:%S", time.localtime(float(row.get("finished_at") or 0)))
        table.add_row(cell(str(row.get("task_id", ""))[:36]), cell(str(row.get("conversation_id", ""))[:40]),
                      cell(row.get("outcome", "")), cell(str(row.get("error", ""))[:200]), at)
    console.print(table)


@app.command()
def status(
    ctx: typer.Context,
    batch_id: Annotated[str, typer.Argument(help="Batch id.")],
    watch: Annotated[bool, typer.Option("--watch", help="Follow live until it finishes.")] = False,
) -> None:
    """Show a batch's progress and outcome counts.

    Example: genesys-closer status 5f0c... --watch
    """
    state = _state(ctx)
    batch = state.client.batch(batch_id)
    if watch:
        raise typer.Exit(follow(state, batch))
    _print_status(state, batch.status().as_dict())


@app.command()
def results(
    ctx: typer.Context,
    batch_id: Annotated[str, typer.Argument(help="Batch id.")],
    fmt: Annotated[str, typer.Option("--format", help="csv or jsonl.")] = "csv",
    output: Annotated[Path | None, typer.Option("-o", "--output", help="Write here instead of stdout.")] = None,
    outcome: Annotated[list[str] | None, typer.Option("--outcome", help="Only these outcomes (repeatable).")] = None,
) -> None:
    """Export every item of a batch with outcome, attempts, API calls and times (streamed).

    CSV cells that a spreadsheet would evaluate as a formula are prefixed with a quote.

    Example: genesys-closer results 5f0c... --format csv -o results.csv
    """
    state = _state(ctx)
    if fmt not in {"csv", "jsonl"}:
        raise InputError("--format must be csv or jsonl")
    wanted = {_outcome(o) for o in outcome} if outcome else None
    batch = state.client.batch(batch_id)
    items = (r for r in batch.results() if wanted is None or r.outcome in wanted)
    writer = write_csv if fmt == "csv" else write_jsonl
    if output is None:
        writer(items, sys.stdout)
        return
    try:
        out = output.open("w", encoding="utf-8", newline="")
    except OSError as exc:
        raise InputError(f"cannot write {output}: {exc.strerror or exc}") from None
    with out:
        count = writer(items, out)
    errors.print(f"{count} items written to {inert(output)}", markup=False)


def _outcome(name: str) -> Outcome:
    try:
        return Outcome(name)
    except ValueError:
        raise InputError(f"unknown outcome {name[:60]!r} (one of {', '.join(o.value for o in Outcome)})") from None


@app.command()
def cancel(ctx: typer.Context, batch_id: Annotated[str, typer.Argument(help="Batch id.")]) -> None:
    """Cancel a batch: items not yet run end as 'cancelled'; running ones finish.

    Example: genesys-closer cancel 5f0c...
    """
    state = _state(ctx)
    _print_status(state, state.client.batch(batch_id).cancel().as_dict())


@app.command()
def retry(
    ctx: typer.Context,
    batch_id: Annotated[str, typer.Argument(help="Batch id.")],
    outcome: Annotated[list[str] | None, typer.Option("--outcome", help="Outcomes to retry (repeatable).")] = None,
    policy: PolicyOption = None,
    detach: DetachOption = False,
) -> None:
    """Start a new batch with the items of BATCH that ended with the given outcomes (default: failed).

    Examples:
      genesys-closer retry 5f0c... --outcome failed --outcome unconfirmed
      genesys-closer retry 5f0c... --outcome unconfirmed --policy participants
    """
    state = _state(ctx)
    wanted = {_outcome(o) for o in (outcome or ["failed"])}
    old = state.client.batch(batch_id)
    ids = iter(r.conversation_id for r in old.results() if r.outcome in wanted)
    first = next(ids, None)
    if first is None:  # nothing ended that way: no batch to start
        if state.json:
            state.emit({"event": "nothing_to_retry", "retry_of": batch_id})
        else:
            console.print(f"nothing to retry in {inert(batch_id)}", markup=False)
        raise typer.Exit(0)
    batch = state.client.close_many(itertools.chain([first], ids), label=f"retry of {batch_id[:8]}",
                                    source=f"retry:{batch_id}", options=_options(policy, False))
    total = batch.status().total
    if state.json:
        state.emit({"event": "started", "retry_of": batch_id, **batch.status().as_dict()})
    else:
        console.print(f"batch {inert(batch.id)} started with {total} item(s) from {inert(batch_id)}", markup=False)
    if detach or not total:
        raise typer.Exit(0)
    raise typer.Exit(follow(state, batch))


@app.command()
def batches(
    ctx: typer.Context,
    limit: LimitOption = 20,
) -> None:
    """List recent batches (bulk runs, sweeps, retries).

    Example: genesys-closer batches --limit 5
    """
    state = _state(ctx)
    recent = state.client.batches(limit)
    if state.emit_all(s.as_dict() for s in recent):
        return
    table = Table("label", "state", "done", "outcomes", "created")
    table.columns.insert(0, Column("batch", no_wrap=True))
    for s in recent:
        created = time.strftime("%Y-%m-%d %H:%M:%S", time.localtime(s.created_at))
        table.add_row(cell(s.batch_id), cell(s.label), cell(s.state), f"{s.done}/{s.total}",
                      cell(_counts_text(s.counts)), created)
    console.print(table)


WORKER_STARTUP_SECONDS = 30


@app.command()
def serve(
    ctx: typer.Context,
    host: Annotated[str, typer.Option(help="Address to listen on (put TLS in front of it: a proxy or a load "
                                           "balancer).")] = "127.0.0.1",
    port: Annotated[int, typer.Option(help="Port to listen on.")] = 8080,
    workers: Annotated[int, typer.Option(min=1, max=64, help="Intake processes sharing the port (state is in "
                                                             "Redis, so any number works; about one per core).")] = 1,
) -> None:
    """Serve the HTTP intake: POST /v1/closes, /v1/batches and their status and results (OpenAPI at /docs).

    Needs REDIS_URL and INTAKE_TOKENS (bearer tokens, comma-separated for rotation) or INTAKE_BASIC_AUTH
    (user:password); it refuses to start without one of them.

    Example: INTAKE_TOKENS=$(openssl rand -hex 24) genesys-closer serve --port 8080 --workers 2
    """
    import uvicorn

    from genesys_closer.config.settings import load_intake_settings
    from genesys_closer.producer.intake import ENV_FILE_VARIABLE, MULTIPROCESS_DIR_VARIABLE, create_app
    from genesys_closer.producer.intake_http import uvicorn_options
    from genesys_closer.shared.logging_setup import configure_logging

    state = _state(ctx)
    overrides: dict[str, Any] = {}
    if state.redis_url:
        overrides["redis_url"] = state.redis_url
    if state.env_file:
        overrides["_env_file"] = str(state.env_file)
    settings = load_intake_settings(**overrides)  # checked here, before any process starts
    secrets = [*settings.bearer_tokens(), *(settings.basic_credentials() or ())]
    configure_logging(settings.log_level, settings.log_format, secrets)
    errors.print(f"intake listening on http://{inert(host)}:{port} (OpenAPI: /docs), {workers} process(es)",
                 markup=False)
    options: dict[str, Any] = {"host": host, "port": port, "log_config": None, "access_log": True,
                               "server_header": False, "proxy_headers": False, **uvicorn_options(settings)}
    if workers == 1:
        uvicorn.run(create_app(settings), **options)
        return
    if state.redis_url:  # each process reads its settings itself, from the same environment
        os.environ["REDIS_URL"] = state.redis_url
    if state.env_file:
        os.environ[ENV_FILE_VARIABLE] = str(state.env_file)
    own_metrics_dir = not os.environ.get(MULTIPROCESS_DIR_VARIABLE)
    if own_metrics_dir:  # /metrics then adds up every process's samples
        os.environ[MULTIPROCESS_DIR_VARIABLE] = tempfile.mkdtemp(prefix="genesys-closer-intake-metrics-")
    # A process gets WORKER_STARTUP_SECONDS to import and answer the supervisor's first health check (uvicorn's 5 s
    # default kills slow starters on a busy host, then starts them again).
    try:
        uvicorn.run("genesys_closer.producer.intake:app_from_environment", factory=True, workers=workers,
                    timeout_worker_healthcheck=WORKER_STARTUP_SECONDS, **options)
    finally:
        if own_metrics_dir:
            shutil.rmtree(os.environ[MULTIPROCESS_DIR_VARIABLE], ignore_errors=True)


def exit_status_for(exc: BaseException) -> tuple[int, str] | None:
    """The exit status and the one line to print for an error that ends a command, or None for a bug."""
    if isinstance(exc, (ConfigError, InputError, ValueError, BatchNotFound)):
        return EXIT_USAGE, f"error: {inert(str(exc)[:1000])}"
    if isinstance(exc, CloserError):
        return EXIT_NOT_ALL_SUCCEEDED, f"error: {inert(str(exc)[:1000])}"
    unreachable = _redis_unreachable(exc)
    if unreachable is not None:
        return EXIT_UNREACHABLE, (f"cannot reach Redis: {type(unreachable).__name__}: {inert(str(unreachable)[:300])} "
                                  "(check REDIS_URL / --redis-url)")
    if isinstance(exc, redis.ResponseError):
        return EXIT_UNREACHABLE, (f"Redis refused a command: {inert(str(exc)[:300])} (check the database number in "
                                  "REDIS_URL)")
    if isinstance(exc, OSError):  # a file or stream of the operator's (not Redis: redis-py's errors are not OSError)
        return EXIT_USAGE, f"error: {inert(str(exc)[:1000])}"
    return None


def _redis_unreachable(exc: BaseException) -> BaseException | None:
    """The Redis connection error behind ``exc`` (itself, or what Celery's or kombu's error was raised from)."""
    seen: BaseException | None = exc
    for _ in range(10):
        if seen is None:
            return None
        if isinstance(seen, (redis.ConnectionError, redis.TimeoutError, redis.AuthenticationError)):
            return seen
        seen = seen.__cause__ or seen.__context__
    return None


def main() -> None:
    """Console entry point: errors become one clear line and a documented exit status (see --help)."""
    try:
        app()
    except Exception as exc:
        status = exit_status_for(exc)
        if status is None:
            raise
        errors.print(status[1], markup=False)
        sys.exit(status[0])


if __name__ == "__main__":
    main()
