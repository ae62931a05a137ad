"""The intake API's routes for operators: what the console's pages call, open to any API caller as well.

    GET  /v1/batches                      recent batches with closes per minute and ETA (shared reads)
    GET  /v1/events/batches               the same, as Server-Sent Events
    GET  /v1/batches/{id}/events          one batch's progress, as Server-Sent Events (ends when it finishes)
    GET  /v1/batches/{id}/items           one page of results: ?outcome=a,b &q=id-part &cursor= &limit=
    POST /v1/batches/{id}/retry           {"outcomes": [...]}: a new batch of the items that ended so
    POST /v1/batches/dry-run              a text/plain or text/csv id list checked line by line; nothing stored
    POST /v1/sweeps                       {"filters": {...}, "dryRun": true}: queue a sweep (a worker queries)
    GET  /v1/sweeps/{id}                  its state, summary and candidates with reasons
    POST /v1/sweeps/{id}/close            {"confirm": N}: close the dry run's N chosen candidates as a batch (once:
                                          asked again, it answers 200 with the batch already started)
    GET  /v1/readiness                    ``genesys-closer check``'s rows, run by a worker
    GET  /v1/fleet                        workers seen, limiter pause, breaker, analytics trust, rate per minute
                                          over the last hour, rejected messages

Everything here reads Redis (and the broker) only; the Genesys calls stay on the workers.
"""

from __future__ import annotations

import functools
import itertools
import re
import time
import uuid
from collections.abc import Callable
from typing import Annotated, Any, Protocol

from fastapi import Depends, FastAPI, Query, Request
from fastapi.responses import JSONResponse, StreamingResponse
from pydantic import BaseModel, ConfigDict, Field
from starlette.concurrency import run_in_threadpool

from genesys_closer.config.orgs import DEFAULT_ORG
from genesys_closer.config.redis_keys import keys_for
from genesys_closer.config.settings import IntakeSettings
from genesys_closer.producer.api import BatchIdInUse, BatchNotFound, CloseClient, InvalidArgument
from genesys_closer.producer.console.auth import Caller, console_caller
from genesys_closer.producer.console.id_lines import check_lines
from genesys_closer.producer.console.live import Rates, SharedReads, event_stream
from genesys_closer.producer.console.sessions import SessionStore
from genesys_closer.producer.inputs import InputError
from genesys_closer.producer.intake_http import UPLOAD_FORMATS, IntakeError, upload_column
from genesys_closer.shared.ids import InvalidConversationId, parse_conversation_id
from genesys_closer.shared.names import QUEUE_INTERACTIVE, READINESS_TASK_NAME
from genesys_closer.shared.outcomes import CloseResult, Outcome
from genesys_closer.shared.redis_connection import text
from genesys_closer.shared.stores.batch_store import is_batch_id

MAX_PAGE = 200  # items per results page
SCAN_STEPS_PER_PAGE = 20  # a filtered page looks at most this many HSCAN steps (then says where to go on)
SCAN_COUNT = 500
MAX_CANDIDATES_SHOWN = 2000
READINESS_WAIT_SECONDS = 30.0
READINESS_CACHE_SECONDS = 30.0
FLEET_CACHE_SECONDS = 5.0
WORKERS_CACHE_SECONDS = 10.0
USAGE_MINUTES = 60
_ID_PART = re.compile(r"^[0-9a-f-]{1,36}$")
Who = Annotated[Caller, Depends(console_caller)]
ORG = Query(None, max_length=40, description="The org (default: 'default' when granted, else the credential's only "
            "org)")


class OrgClients(Protocol):
    """``producer.intake.OrgClients``: one CloseClient per org."""

    base: CloseClient

    def __getitem__(self, org: str) -> CloseClient: ...


class RetryRequest(BaseModel):
    model_config = ConfigDict(extra="forbid")
    outcomes: list[str] = Field(default_factory=lambda: ["failed"], max_length=20)


class SweepRequest(BaseModel):
    model_config = ConfigDict(extra="forbid")
    filters: dict[str, Any] = Field(default_factory=dict)
    dryRun: bool = True


class SweepClose(BaseModel):
    model_config = ConfigDict(extra="forbid")
    confirm: int = Field(ge=1, description="the number of chosen candidates, typed by the operator")


def outcomes_named(names: list[str]) -> set[Outcome]:
    try:
        return {Outcome(name) for name in names}
    except ValueError:
        raise IntakeError(422, "invalid_outcome", "unknown outcome; one of "
                          + ", ".join(o.value for o in Outcome)) from None


def sweep_id_of(raw: str) -> str:
    try:
        return str(uuid.UUID(raw))
    except ValueError:
        raise IntakeError(404, "not_found", "no such sweep") from None


class OperatorReads:
    """The reads behind the operator routes, each shared by every viewer for a short while (per org)."""

    def __init__(self, orgs: OrgClients, settings: IntakeSettings) -> None:
        self.orgs = orgs
        self.settings = settings
        self.shared = SharedReads(settings.console_live_seconds)
        self.rates = Rates()

    # -- batches -----------------------------------------------------------------------------------------------
    def batch(self, org: str, batch_id: str) -> dict[str, Any]:
        if not is_batch_id(batch_id):
            raise IntakeError(404, "not_found", "no such batch")
        client = self.orgs[org]

        def read() -> dict[str, Any] | None:
            status = client.results.batches.status(batch_id)
            return None if status is None else {**self.rates.figures(status.as_dict()), "org": org}

        shown = self.shared.get(f"batch:{org}:{batch_id}", read)
        if shown is None:
            raise IntakeError(404, "not_found", "no such batch (unknown, or older than the retention)")
        return dict(shown)

    def recent(self, orgs: frozenset[str], limit: int) -> list[dict[str, Any]]:
        """The recent batches of every org given, newest first, each with its ``org``."""
        def read(org: str) -> list[dict[str, Any]]:
            return [{**self.rates.figures(s.as_dict()), "org": org} for s in self.orgs[org].batches(limit)]

        merged: list[dict[str, Any]] = []
        for org in sorted(orgs):
            merged += self.shared.get(f"batches:{org}:{limit}", functools.partial(read, org))
        return sorted(merged, key=lambda b: -float(b.get("created_at") or 0))[:limit]

    def items(self, org: str, batch_id: str, outcomes: set[Outcome] | None, q: str, cursor: int, limit: int
              ) -> dict[str, Any]:
        """One page of a batch's results. HSCAN order (arbitrary, stable across a page's cursor); a filter or a
        search scans at most SCAN_STEPS_PER_PAGE steps and hands back the cursor to go on from."""
        self.batch(org, batch_id)
        store = self.orgs[org].results.batches
        wanted: list[CloseResult] = []
        if len(q) == 36:
            try:
                exact = parse_conversation_id(q)
            except InvalidConversationId:
                exact = ""
            item = store.item(batch_id, exact) if exact else None
            if item is not None and (outcomes is None or item.outcome in outcomes):
                wanted.append(item)
            return {"items": [i.as_dict() for i in wanted], "cursor": None}
        match = f"*{q}*" if q else None
        steps = 0
        while True:
            cursor, found = store.items_page(batch_id, cursor, SCAN_COUNT if (outcomes or match) else limit, match)
            wanted += [i for i in found if outcomes is None or i.outcome in outcomes]
            steps += 1
            if cursor == 0 or len(wanted) >= limit or steps >= SCAN_STEPS_PER_PAGE:
                break
        return {"items": [i.as_dict() for i in wanted], "cursor": cursor or None}

    # -- fleet -------------------------------------------------------------------------------------------------
    def workers(self) -> list[str]:
        def read() -> list[str]:
            replies = self.orgs.base.app.control.ping(timeout=1.0) or []
            return sorted(name for reply in replies for name in reply)

        return list(self.shared.get("workers", read, WORKERS_CACHE_SECONDS))

    def fleet(self, org: str) -> dict[str, Any]:
        return dict(self.shared.get(f"fleet:{org}", lambda: self._read_fleet(org), FLEET_CACHE_SECONDS))

    def _read_fleet(self, org: str) -> dict[str, Any]:
        client = self.orgs[org]
        keys = keys_for(org)
        r = client.redis
        buckets = sorted(text(b) for b in r.smembers(keys.rate_limit_buckets))
        pipe = r.pipeline(transaction=False)
        for bucket in buckets:
            pipe.hgetall(keys.rate_limit(bucket, "used"))
            pipe.pttl(keys.rate_limit(bucket, "pause"))
            pipe.get(keys.rate_limit(bucket, "pauses"))
            pipe.get(keys.breaker(bucket, "open"))
            pipe.get(keys.breaker(bucket, "failures"))
        pipe.hgetall(keys.analytics_trust)
        pipe.time()
        replies = pipe.execute()
        seconds, _ = replies[-1]
        now_minute = int(seconds) // 60
        shown = []
        for index, bucket in enumerate(buckets):
            used, pause_ms, pauses, open_reason, failures = replies[index * 5:index * 5 + 5]
            used = {text(k): text(v) for k, v in used.items()}
            minutes = range(now_minute - USAGE_MINUTES + 1, now_minute + 1)
            shown.append({
                "bucket": bucket,
                "limit_per_minute": float(used["limit"]) if "limit" in used else None,
                "admitted_per_minute": int(used["admitted"]) if "admitted" in used else None,
                "used": [{"minute": m * 60, "requests": int(used.get(str(m), 0))} for m in minutes],
                "paused_seconds": round(pause_ms / 1000, 1) if pause_ms and pause_ms > 0 else 0,
                "pauses": int(pauses or 0),
                "breaker_open": None if open_reason is None else text(open_reason)[:500],
                "breaker_failures": int(failures or 0),
            })
        trust = {text(k): text(v)[:500] for k, v in replies[-2].items()}
        return {"org": org, "buckets": shown, "analytics_trust": {"trusted": not trust, **trust},
                "rejected": client.rejected(20), "at": float(seconds)}

    def readiness(self, org: str, refresh: bool) -> dict[str, Any]:
        return dict(self.shared.get(f"readiness:{org}", lambda: self._run_readiness(org),
                                    5.0 if refresh else READINESS_CACHE_SECONDS))

    def _run_readiness(self, org: str) -> dict[str, Any]:
        app = self.orgs.base.app
        kwargs = {} if org == DEFAULT_ORG else {"org": org}
        task = app.send_task(READINESS_TASK_NAME, kwargs=kwargs, queue=QUEUE_INTERACTIVE,
                             expires=READINESS_WAIT_SECONDS)
        deadline = time.monotonic() + READINESS_WAIT_SECONDS
        while time.monotonic() < deadline:
            meta = app.backend.get_task_meta(task.id)
            if meta.get("status") == "SUCCESS" and isinstance(meta.get("result"), dict):
                return {**meta["result"], "org": org, "checked_at": time.time()}
            if meta.get("status") in {"FAILURE", "REVOKED"}:
                return {"ready": False, "checks": [], "org": org, "error": "the check failed on the worker",
                        "checked_at": time.time()}
            time.sleep(0.2)
        return {"ready": False, "checks": [], "org": org,
                "error": f"no worker answered within {READINESS_WAIT_SECONDS:g} s", "checked_at": time.time()}

    # -- sweeps ------------------------------------------------------------------------------------------------
    def sweep(self, org: str, sweep_id: str) -> dict[str, Any]:
        client = self.orgs[org]
        summary = client.results.sweeps.summary(sweep_id)
        if summary is None:
            meta = client.app.backend.get_task_meta(sweep_id)
            if meta.get("status") == "SUCCESS":  # it may have saved its candidates and ended since the first read
                summary = client.results.sweeps.summary(sweep_id)
            if summary is None:
                return self._sweep_not_done(meta)
        candidates = list(itertools.islice(client.results.sweeps.candidates(sweep_id), MAX_CANDIDATES_SHOWN))
        return {"state": "done", "summary": summary, "candidates": candidates, "org": org}

    @staticmethod
    def _sweep_not_done(meta: dict[str, Any]) -> dict[str, Any]:
        """A sweep with no candidates saved: still running, or ended without any (its task's result says why)."""
        result = meta.get("result")
        if meta.get("status") == "SUCCESS" and isinstance(result, dict):
            return {"state": "error", "error": str(result.get("error") or result.get("skipped")
                                                    or "no candidates recorded")[:1000]}
        if meta.get("status") in {"FAILURE", "REVOKED"}:
            return {"state": "error", "error": "the sweep failed on the worker"}
        return {"state": "running"}


def add_operator_routes(app: FastAPI, reads: OperatorReads, sessions: SessionStore) -> None:
    live = reads.settings.console_live_seconds
    missing = "no such batch (unknown, or older than the retention)"

    async def alive(request: Request) -> bool:
        session = getattr(request.state, "console_session", None)
        return session is None or bool(await run_in_threadpool(sessions.alive, session))

    def events(request: Request, read: Callable[[], Any], finished: Callable[[Any], bool]) -> StreamingResponse:
        async def read_async() -> Any:
            return await run_in_threadpool(read)

        async def still_alive() -> bool:
            return await alive(request)

        stream = event_stream(request, read_async, finished, live, still_alive)
        return StreamingResponse(stream, media_type="text/event-stream",
                                 headers={"Cache-Control": "no-store", "X-Accel-Buffering": "no"})

    @app.get("/v1/batches")
    def list_batches(who: Who, limit: int = Query(20, ge=1, le=100)) -> dict[str, Any]:
        """Recent batches of every org this credential is granted, with closes per minute and ETA."""
        return {"batches": reads.recent(who.orgs, limit)}

    @app.get("/v1/events/batches", response_class=StreamingResponse)
    async def batches_events(request: Request, who: Who, limit: int = Query(20, ge=1, le=100)) -> StreamingResponse:
        return events(request, lambda: {"batches": reads.recent(who.orgs, limit)}, lambda _: False)

    @app.get("/v1/batches/{batch_id}/events", response_class=StreamingResponse)
    async def batch_events(request: Request, batch_id: str, who: Who, org: str | None = ORG) -> StreamingResponse:
        chosen = who.org(org, missing)
        await run_in_threadpool(reads.batch, chosen, batch_id)  # 404 before the stream starts
        return events(request, lambda: reads.batch(chosen, batch_id), lambda s: s.get("finished_at") is not None)

    @app.get("/v1/batches/{batch_id}/items")
    def batch_items(batch_id: str, who: Who, org: str | None = ORG, outcome: str = Query("", max_length=400),
                    q: str = Query("", max_length=36), cursor: int = Query(0, ge=0),
                    limit: int = Query(50, ge=1, le=MAX_PAGE)) -> dict[str, Any]:
        wanted = outcomes_named([o for o in outcome.split(",") if o]) if outcome else None
        search = q.strip().lower()
        if search and not _ID_PART.fullmatch(search):
            raise IntakeError(422, "invalid_search", "search by a part of a conversation id: hex digits and -")
        return reads.items(who.org(org, missing), batch_id, wanted, search, cursor, limit)

    @app.post("/v1/batches/{batch_id}/retry", status_code=202)
    def retry_batch(batch_id: str, body: RetryRequest, who: Who, org: str | None = ORG) -> JSONResponse:
        wanted = outcomes_named(body.outcomes)
        chosen = who.org(org, missing)
        reads.batch(chosen, batch_id)
        client = reads.orgs[chosen]
        try:
            old = client.batch(batch_id)
        except BatchNotFound:
            raise IntakeError(404, "not_found", missing) from None
        ids = iter(r.conversation_id for r in old.results() if r.outcome in wanted)
        first = next(ids, None)
        if first is None:
            raise IntakeError(422, "nothing_to_retry", "no item of this batch ended with those outcomes")
        batch = client.close_many(itertools.chain([first], ids), label=f"retry of {batch_id[:8]}",
                                  source=f"retry:{batch_id}")
        total = batch.check.valid if batch.check is not None else None
        return JSONResponse({"batchId": batch.id, "statusUrl": f"/v1/batches/{batch.id}", "total": total,
                             "retryOf": batch_id, "org": chosen}, status_code=202)

    _batch_check_route(app, reads)
    _sweep_and_fleet_routes(app, reads)


def _batch_check_route(app: FastAPI, reads: OperatorReads) -> None:
    @app.post("/v1/batches/dry-run",
              openapi_extra={"requestBody": {"content": {"text/plain": {"schema": {"type": "string"}},
                                                         "text/csv": {"schema": {"type": "string"}},
                                                         "application/x-ndjson": {"schema": {"type": "string"}}}}})
    async def dry_run(request: Request, who: Who) -> dict[str, Any]:
        """Check an id list as ``POST /v1/batches`` would take it, line by line; nothing is stored."""
        content_type = request.headers.get("content-type", "").split(";")[0].strip().lower()
        if content_type not in UPLOAD_FORMATS:
            raise IntakeError(415, "unsupported_media_type", "send text/plain, text/csv or application/x-ndjson")
        column = upload_column(request.query_params.get("column"))
        raw = await request.body()
        try:
            body = raw.decode("utf-8-sig")
        except UnicodeDecodeError:
            raise IntakeError(422, "invalid_body", "the body is not UTF-8 text") from None
        try:
            check = await run_in_threadpool(check_lines, body, UPLOAD_FORMATS[content_type],
                                            reads.settings.intake_max_batch_ids, column)
        except InputError as exc:
            raise IntakeError(422, "invalid_body", str(exc)[:500]) from None
        if not check.valid and not check.invalid:
            raise IntakeError(422, "empty_batch", "no conversation ids")
        return check.as_dict()


def _sweep_and_fleet_routes(app: FastAPI, reads: OperatorReads) -> None:
    @app.post("/v1/sweeps", status_code=202)
    def start_sweep(body: SweepRequest, who: Who, org: str | None = ORG) -> dict[str, Any]:
        chosen = who.org(org, "no such org")
        try:
            request = reads.orgs[chosen].sweep(body.filters, dry_run=body.dryRun)
        except InvalidArgument as exc:
            raise IntakeError(422, "invalid_sweep", str(exc)[:1000]) from None
        query = "" if chosen == DEFAULT_ORG else f"?org={chosen}"
        return {"sweepId": request.id, "statusUrl": f"/v1/sweeps/{request.id}{query}", "dryRun": body.dryRun,
                "org": chosen}

    @app.get("/v1/sweeps/{sweep_id}")
    def get_sweep(sweep_id: str, who: Who, org: str | None = ORG) -> dict[str, Any]:
        return reads.sweep(who.org(org, "no such sweep"), sweep_id_of(sweep_id))

    @app.post("/v1/sweeps/{sweep_id}/close", status_code=202)
    def close_swept(sweep_id: str, body: SweepClose, who: Who, org: str | None = ORG) -> JSONResponse:
        chosen = who.org(org, "no such sweep")
        client = reads.orgs[chosen]
        canonical = sweep_id_of(sweep_id)
        summary = client.results.sweeps.summary(canonical)
        if summary is None:
            raise IntakeError(404, "not_found", "no finished sweep of this id")
        if not summary.get("dry_run"):
            raise IntakeError(409, "not_a_dry_run", "this sweep was not a dry run: it started its own batch")
        picked = [c["conversation_id"] for c in client.results.sweeps.candidates(canonical) if c.get("chosen")]
        if body.confirm != len(picked):
            raise IntakeError(422, "confirmation_mismatch", f"type the number of chosen candidates ({len(picked)}) "
                              "to confirm")
        # The batch's id is the sweep's: a second "close these N" (a double click, a retried request) finds the
        # batch the first one started instead of starting the same closes again.
        batch_id = uuid.UUID(canonical).hex
        try:
            client.close_many(picked, label="sweep (console)", source=f"sweep:{canonical}", batch_id=batch_id)
        except BatchIdInUse:
            return JSONResponse({"batchId": batch_id, "statusUrl": f"/v1/batches/{batch_id}", "total": len(picked),
                                 "org": chosen, "alreadyStarted": True}, status_code=200)
        return JSONResponse({"batchId": batch_id, "statusUrl": f"/v1/batches/{batch_id}", "total": len(picked),
                             "org": chosen}, status_code=202)

    @app.get("/v1/readiness")
    async def readiness(who: Who, org: str | None = ORG, refresh: bool = False) -> dict[str, Any]:
        return await run_in_threadpool(reads.readiness, who.org(org, "no such org"), refresh)

    @app.get("/v1/fleet")
    def fleet(who: Who, org: str | None = ORG) -> dict[str, Any]:
        return {**reads.fleet(who.org(org, "no such org")), "workers": reads.workers()}
