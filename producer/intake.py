"""The HTTP intake: ``genesys-closer serve`` lets apps in any language, and Genesys Cloud itself (Web Services Data
Actions called from Architect flows or from workflows started by triggers), request closes over HTTP.

It needs only Redis and its own credentials (bearer tokens, optionally Basic), like every producer. Bad input is
answered before anything is enqueued, in one error shape with a request id; options from callers follow the task
rules (they can only narrow what the workers allow). The OpenAPI document is at ``/openapi.json``, the docs at
``/docs``.

Nothing blocks the event loop: Redis and broker calls run in the thread pool, a batch upload is validated and stored
in a thread and answered 202 before its closes are published (``BackgroundEnqueue``), ``?wait=`` polls
asynchronously within a per-process cap (``WaitSlots``), and ``/healthz`` answers from the loop itself. Slow and
oversized clients are bounded below the routes (``intake_http``). Every piece of shared state (rate limit,
idempotency keys, batches) is in Redis, so any number of intake processes can serve the same callers.

Orgs: each bearer token is granted orgs (``INTAKE_TOKENS``; plain tokens and Basic credentials: ``default``). A
request names its org (the JSON field ``org``, or ``?org=``); without one it acts for ``default`` when granted, else
for the caller's only org. An org the caller is not granted is answered exactly as something that does not exist
(404): another org's batches and conversations are invisible, whether that org exists or not.
"""

from __future__ import annotations

import asyncio
import base64
import binascii
import hashlib
import hmac
import io
import itertools
import logging
import math
import os
import threading
import time
from collections.abc import Iterator
from typing import Annotated, Any, cast

import redis
from fastapi import Depends, FastAPI, Query, Request
from fastapi.exceptions import RequestValidationError
from fastapi.responses import JSONResponse, Response, StreamingResponse
from prometheus_client import CONTENT_TYPE_LATEST, CollectorRegistry, Counter, Gauge, generate_latest, multiprocess
from pydantic import BaseModel, ConfigDict, Field
from starlette.concurrency import run_in_threadpool
from starlette.exceptions import HTTPException as StarletteHTTPException

from genesys_closer.config.orgs import DEFAULT_ORG, is_org_name
from genesys_closer.config.settings import IntakeSettings, load_intake_settings
from genesys_closer.producer.api import BatchNotFound, CloseClient, validate_options
from genesys_closer.producer.console.api import OperatorReads, add_operator_routes
from genesys_closer.producer.console.auth import ConsoleAuth, LoginLimiter, console_caller
from genesys_closer.producer.console.pages import SecurityHeaders, add_console
from genesys_closer.producer.console.sessions import SessionStore
from genesys_closer.producer.export import csv_lines, jsonl_lines
from genesys_closer.producer.idempotency import Claim, IdempotencyKeys, fingerprint, is_valid_key
from genesys_closer.producer.inputs import ID_COLUMNS, InputError, read_ids
from genesys_closer.producer.intake_http import (
    UPLOAD_FORMATS,
    BodyGuard,
    IntakeError,
    RequestIdAndMetrics,
    error_response,
    upload_column,
)
from genesys_closer.shared.batches import BatchWriter, StagedBatch
from genesys_closer.shared.ids import InvalidConversationId, parse_conversation_id
from genesys_closer.shared.logging_setup import configure_logging
from genesys_closer.shared.outcomes import CloseResult
from genesys_closer.shared.rate_limit import RedisRateLimiter
from genesys_closer.shared.stores.batch_store import is_batch_id

log = logging.getLogger("genesys_closer.intake")
MAX_REPORTED_INVALID = 20
BURST_SECONDS = 1.0  # how far ahead a caller may reserve slots before it is told 429
API_VERSION = "v1"
RESULT_LINES_PER_CHUNK = 500  # streamed results: lines read per thread hop
READY_CACHE_SECONDS = 2.0  # /readyz asks the workers at most this often
ENV_FILE_VARIABLE = "GENESYS_CLOSER_SERVE_ENV_FILE"  # how `serve --env-file` reaches the processes of --workers N
MULTIPROCESS_DIR_VARIABLE = "PROMETHEUS_MULTIPROC_DIR"  # where the processes of --workers N share their metrics


ORG_FIELD = Field(None, max_length=40, description="The Genesys org (as the workers' configuration names it); "
                  "default: 'default' when this credential is granted it, else its only org.")


class CloseRequest(BaseModel):
    model_config = ConfigDict(extra="forbid")
    conversationId: str = Field(max_length=100, description="The conversation id (a UUID).")
    org: str | None = ORG_FIELD
    wrapupCode: str | None = Field(None, max_length=500,
                                   description="Wrap-up code for agents left owing one.")
    label: str | None = Field(None, max_length=200, description="Free text, echoed back.")


class BatchRequest(BaseModel):
    model_config = ConfigDict(extra="forbid")
    conversationIds: list[Any] = Field(description="Conversation ids; invalid ones are reported, the rest run.")
    label: str | None = Field(None, max_length=200)
    org: str | None = ORG_FIELD


class CloseAccepted(BaseModel):
    taskId: str
    conversationId: str
    statusUrl: str
    label: str | None = None
    org: str = DEFAULT_ORG


class BatchAccepted(BaseModel):
    batchId: str
    statusUrl: str
    resultsUrl: str
    total: int | None
    invalid: int
    invalidSamples: list[str]
    org: str = DEFAULT_ORG


class Caller:
    """Who is asking: the digest of the credential used, and the orgs it is granted."""

    def __init__(self, credential: str, orgs: frozenset[str]) -> None:
        self.credential = credential
        self.orgs = orgs

    def org(self, requested: object, not_found: str) -> str:
        """The org a request acts for. An org this caller is not granted, or no org name at all, is answered as
        ``not_found`` answers a missing thing (404), so nothing tells another org's existence."""
        if requested is None or requested == "":
            if DEFAULT_ORG in self.orgs:
                return DEFAULT_ORG
            if len(self.orgs) == 1:
                return next(iter(self.orgs))
            raise IntakeError(422, "org_required", "this credential is granted several orgs: name one (org)")
        if not is_org_name(requested) or requested not in self.orgs:
            raise IntakeError(404, "not_found", not_found)
        return str(requested)


async def authenticated_caller(request: Request) -> Caller:
    """The route dependency: who is asking (401 otherwise), within its credential's rate limit: an
    ``Authorization`` header, or else a console session (CSRF-checked on changes; ``producer.console.auth``)."""
    return cast(Caller, await console_caller(request))  # the guard's, or made from a session (make_caller)


Who = Annotated[Caller, Depends(authenticated_caller)]


def org_query(org: str) -> str:
    """The ``?org=`` of an org's URLs (none for ``default``)."""
    return "" if org == DEFAULT_ORG else f"?org={org}"


def schema_problems(errors: Any) -> list[dict[str, str]]:
    """Pydantic's validation errors as the intake reports them: field and problem, at most 20."""
    return [{"field": ".".join(str(part) for part in e.get("loc", ()) if part != "body"),
             "problem": str(e.get("msg", ""))[:200]} for e in list(errors)[:MAX_REPORTED_INVALID]]


def _digest(credential: str) -> str:
    return hashlib.sha256(credential.encode()).hexdigest()[:12]


class Guard:
    """Authentication (bearer tokens compared in constant time, optional Basic) and a per-credential rate limit."""

    def __init__(self, settings: IntakeSettings, client: redis.Redis) -> None:
        self.grants = [(token.encode(), orgs) for token, orgs in settings.token_grants().items()]
        basic = settings.basic_credentials()
        self.basic = None if basic is None else f"{basic[0]}:{basic[1]}".encode()
        # What each configured credential's digest is granted now (a console session names only the digest).
        self.granted = {_digest(token.decode()): orgs for token, orgs in reversed(self.grants)}
        if basic is not None:
            self.granted[_digest(f"{basic[0]}:{basic[1]}")] = frozenset({DEFAULT_ORG})
        self.redis = client
        self.limit = settings.intake_rate_limit_per_minute
        self._limiters: dict[str, RedisRateLimiter] = {}

    def identify(self, request: Request) -> Caller:
        """The credential used and its orgs, or IntakeError 401 (no hint which part was wrong). Every token is
        compared (in constant time), so the time taken does not tell which one matched."""
        return self.identify_header(request.headers.get("authorization", ""))

    def identify_header(self, header: str) -> Caller:
        """``identify`` for an ``Authorization`` value (the console's login form makes one)."""
        scheme, _, value = header.partition(" ")
        candidate = value.strip().encode()
        if scheme.lower() == "bearer":
            matched = [orgs for token, orgs in self.grants if hmac.compare_digest(candidate, token)]
            if matched:
                return Caller(_digest(value.strip()), matched[0])
        if scheme.lower() == "basic" and self.basic is not None:
            try:
                decoded = base64.b64decode(candidate, validate=True)
            except (binascii.Error, ValueError):
                decoded = b""
            if hmac.compare_digest(decoded, self.basic):
                return Caller(_digest(decoded.decode(errors="replace")), frozenset({DEFAULT_ORG}))
        raise IntakeError(401, "unauthorized", "authentication required",
                          headers={"WWW-Authenticate": 'Bearer realm="genesys-closer"'})

    def grants_of(self, credential: str) -> frozenset[str] | None:
        """The orgs a credential (its digest) is granted by the configuration now; None once it is no longer one."""
        return self.granted.get(credential)

    async def admit(self, credential: str) -> None:
        """Take a slot of the credential's limit (in Redis: shared by every intake process); a short burst waits
        for its slot without holding a thread, beyond that: 429."""
        limiter = self._limiters.get(credential)
        if limiter is None:
            limiter = RedisRateLimiter(self.redis, f"intake-{credential}", self.limit, headroom=1.0)
            self._limiters[credential] = limiter
        grant = await run_in_threadpool(limiter.reserve, BURST_SECONDS)
        if grant.granted and grant.wait_seconds > 0:
            await asyncio.sleep(grant.wait_seconds)
        if not grant.granted:
            retry = max(1, math.ceil(grant.wait_seconds))
            raise IntakeError(429, "rate_limited", f"too many requests for this credential; retry in {retry} s",
                              headers={"Retry-After": str(retry)})


def _ids_from_text(body: bytes, fmt: str, column: str | None) -> list[object]:
    """IDs from a text body: plain lines, CSV (the ``column`` column, or a conversationId / conversation_id / id one)
    or JSON Lines (the ``column`` key, conversation_id unless named)."""
    text = body.decode("utf-8-sig", errors="strict")
    try:
        return list(read_ids(io.StringIO(text), fmt=fmt, column=column, name="request body",
                             column_hint=f"name the ID column {' / '.join(ID_COLUMNS)}, or give ?column="))
    except InputError as exc:
        raise IntakeError(422, "invalid_body", str(exc)[:500]) from None


def parse_upload(raw: bytes, content_type: str, max_ids: int,
                 column: str | None = None) -> tuple[list[object], str | None, str | None]:
    """The ids, label and org of a batch upload: JSON, or a text body (plain lines, CSV, JSON Lines: these carry no
    label or org); IntakeError otherwise."""
    label: str | None = None
    org: str | None = None
    if content_type == "application/json":
        try:
            parsed = BatchRequest.model_validate_json(raw)
        except ValueError as exc:
            raise IntakeError(422, "invalid_request", "the request does not match the schema",
                              schema_problems(getattr(exc, "errors", list)())) from None
        ids, label, org = parsed.conversationIds, parsed.label, parsed.org
    elif content_type in UPLOAD_FORMATS:
        try:
            ids = _ids_from_text(raw, UPLOAD_FORMATS[content_type], column)
        except UnicodeDecodeError:
            raise IntakeError(422, "invalid_body", "the body is not UTF-8 text") from None
    else:
        raise IntakeError(415, "unsupported_media_type",
                          "send application/json, text/plain, text/csv or application/x-ndjson")
    if len(ids) > max_ids:
        raise IntakeError(413, "too_many_ids", f"at most {max_ids} ids per batch")
    if not ids:
        raise IntakeError(422, "empty_batch", "no conversation ids")
    return ids, label, org


class BackgroundEnqueue:
    """Publishes staged batches from threads of this process, at most ``limit`` at a time (a slot is reserved
    before the upload is validated, so a full intake says 503 before it stores anything; a replayed upload needs
    none). A batch whose thread dies with the process is finished by the recovery check
    (``shared.enqueue_lease``)."""

    def __init__(self, writer: BatchWriter, limit: int, gauge: Gauge) -> None:
        self.writer = writer
        self._slots = threading.BoundedSemaphore(limit)
        self._gauge = gauge

    def reserve(self) -> bool:
        reserved = self._slots.acquire(blocking=False)
        if reserved:
            self._gauge.inc()
        return reserved

    def unreserve(self) -> None:
        self._gauge.dec()
        self._slots.release()

    def start(self, staged: StagedBatch, writer: BatchWriter | None = None) -> None:
        """Publish ``staged`` (with ``writer``, its org's) in a thread of its own, which frees the slot reserved for
        it when done."""
        threading.Thread(target=self._publish, args=(staged, writer or self.writer),
                         name=f"enqueue-{staged.batch_id[:8]}", daemon=True).start()

    def _publish(self, staged: StagedBatch, writer: BatchWriter) -> None:
        try:
            count = writer.publish_staged(staged)
            log.info("batch %s: %d item(s) published", staged.batch_id, count, extra={"batch_id": staged.batch_id})
        except Exception:  # the lease is released: the recovery check publishes what is missing
            log.exception("batch %s: publishing stopped; the recovery check finishes it", staged.batch_id,
                          extra={"batch_id": staged.batch_id})
        finally:
            self.unreserve()


class OrgClients:
    """One ``CloseClient`` per org this process acts for, all on one Redis connection and Celery app."""

    def __init__(self, base: CloseClient) -> None:
        self.base = base
        self._clients: dict[str, CloseClient] = {base.org: base}
        self._lock = threading.Lock()

    def __getitem__(self, org: str) -> CloseClient:
        with self._lock:
            if org not in self._clients:
                self._clients[org] = self.base.for_org(org)
            return self._clients[org]


class WaitSlots:
    """Bounds the ``?wait=`` requests this process holds at once (they poll without holding a thread)."""

    def __init__(self, limit: int, gauge: Gauge) -> None:
        self.limit = limit
        self.held = 0
        self._gauge = gauge

    def take(self) -> bool:  # called on the event loop only: no lock needed
        if self.held >= self.limit:
            return False
        self.held += 1
        self._gauge.inc()
        return True

    def give_back(self) -> None:
        self.held -= 1
        self._gauge.dec()


async def wait_for_outcome(closes: CloseClient, task_id: str, timeout: float, request: Request) -> Any:
    """Poll for a close's outcome record until ``timeout`` or the caller leaves; None if it has not ended."""
    loop = asyncio.get_running_loop()
    deadline = loop.time() + timeout
    interval = 0.05
    while True:
        result = await run_in_threadpool(closes.poll_result, task_id)
        if result is not None:
            return result
        remaining = deadline - loop.time()
        if remaining <= 0 or await request.is_disconnected():
            return None
        await asyncio.sleep(min(interval, remaining))
        interval = min(interval * 1.5, 0.5)


def in_chunks(lines: Iterator[str], size: int = RESULT_LINES_PER_CHUNK) -> Iterator[str]:
    """Lines joined ``size`` at a time, so a streamed response reads Redis in a thread once per chunk, not per line."""
    while chunk := "".join(itertools.islice(lines, size)):
        yield chunk


def app_from_environment() -> FastAPI:
    """The app for ``serve --workers N``: each process reads the settings and sets up its (redacting) logging
    itself (uvicorn's factory)."""
    env_file = os.environ.get(ENV_FILE_VARIABLE)
    settings = load_intake_settings(**({"_env_file": env_file} if env_file else {}))
    configure_logging(settings.log_level, settings.log_format,
                      [*settings.bearer_tokens(), *(settings.basic_credentials() or ())])
    return create_app(settings)


def create_app(settings: IntakeSettings, client: CloseClient | None = None) -> FastAPI:
    """The intake's ASGI app (served by ``genesys-closer serve`` with uvicorn)."""
    closes = client or CloseClient(settings)
    guard = Guard(settings, closes.redis)
    registry = CollectorRegistry()
    requests_total = Counter("genesys_closer_intake_requests_total", "Intake requests, by route and status.",
                             ["route", "status"], registry=registry)
    waiting = Gauge("genesys_closer_intake_waiting", "?wait= requests waiting for an outcome.", registry=registry,
                    multiprocess_mode="livesum")
    enqueuing = Gauge("genesys_closer_intake_enqueuing_batches", "Batches being validated, stored or published in "
                      "the background.", registry=registry, multiprocess_mode="livesum")
    app = FastAPI(title="genesys-closer intake", version=API_VERSION,
                  description="Request closes of Genesys Cloud web messaging conversations over HTTP. "
                              "Authenticate with a bearer token (INTAKE_TOKENS) or Basic credentials.")

    _error_handlers(app)

    app.state.guard = guard
    sessions = SessionStore(closes.redis, settings.console_session_seconds)
    console_auth = ConsoleAuth(guard, sessions, LoginLimiter(closes.redis, settings.intake_rate_limit_per_minute),
                               Caller)
    app.state.console_auth = console_auth
    authenticated = [Depends(authenticated_caller)]
    orgs = OrgClients(closes)
    _health_routes(app, closes)
    _close_routes(app, orgs, settings, WaitSlots(settings.intake_max_waiting, waiting))
    _batch_routes(app, orgs, settings,
                  BackgroundEnqueue(closes.batches_writer, settings.intake_max_enqueuing_batches, enqueuing))
    _batch_read_routes(app, orgs)
    reads = OperatorReads(orgs, settings)
    add_operator_routes(app, reads, sessions)
    add_console(app, reads, console_auth)  # the operator console, /ui (producer.console.pages)

    @app.get("/metrics", include_in_schema=False, dependencies=authenticated)
    def metrics() -> Response:
        """This process's metrics, or with ``serve --workers N`` (PROMETHEUS_MULTIPROC_DIR) every process's."""
        shown = registry
        if os.environ.get(MULTIPROCESS_DIR_VARIABLE):
            shown = CollectorRegistry()
            multiprocess.MultiProcessCollector(shown)  # type: ignore[no-untyped-call]
        return Response(generate_latest(shown), media_type=CONTENT_TYPE_LATEST)

    app.add_middleware(BodyGuard, limit=settings.intake_max_body_bytes,
                       timeout_seconds=settings.intake_body_timeout_seconds)
    app.add_middleware(SecurityHeaders)
    app.add_middleware(RequestIdAndMetrics, counter=requests_total)  # outermost: it sees every answer
    return app


def _error_handlers(app: FastAPI) -> None:
    @app.exception_handler(IntakeError)
    async def intake_error(request: Request, exc: IntakeError) -> JSONResponse:
        return error_response(request.state.request_id, exc.status, exc.code, exc.message, exc.details, exc.headers)

    @app.exception_handler(RequestValidationError)
    async def validation_error(request: Request, exc: RequestValidationError) -> JSONResponse:
        return error_response(request.state.request_id, 422, "invalid_request", "the request does not match the "
                              "schema (see /openapi.json)", schema_problems(exc.errors()))

    @app.exception_handler(StarletteHTTPException)
    async def http_error(request: Request, exc: StarletteHTTPException) -> JSONResponse:
        code = {404: "not_found", 405: "method_not_allowed"}.get(exc.status_code, "http_error")
        return error_response(request.state.request_id, exc.status_code, code, str(exc.detail)[:200])

    @app.exception_handler(redis.RedisError)
    async def redis_error(request: Request, exc: redis.RedisError) -> JSONResponse:
        log.error("Redis unavailable: %s", type(exc).__name__)
        return error_response(request.state.request_id, 503, "unavailable", "the queue is unavailable; retry later",
                              headers={"Retry-After": "5"})

def _replay(claim: Claim) -> JSONResponse:
    """The answer to a request whose Idempotency-Key an earlier request used."""
    if not claim.same_body:
        raise IntakeError(422, "idempotency_key_reused", "this Idempotency-Key was used with another body; "
                          "use a new key for a new upload")
    if claim.pending:
        raise IntakeError(409, "idempotency_key_in_progress", "a request with this Idempotency-Key is being "
                          "stored; retry shortly", headers={"Retry-After": "1"})
    return JSONResponse(claim.body, status_code=claim.status, headers={"Idempotent-Replayed": "true"})


def _health_routes(app: FastAPI, closes: CloseClient) -> None:
    @app.get("/healthz", include_in_schema=False)
    async def healthz() -> dict[str, str]:  # on the event loop: it answers while every thread is busy
        return {"status": "ok"}

    asked: dict[str, Any] = {"at": -math.inf, "replies": []}
    asking = threading.Lock()

    def worker_replies() -> list[Any]:
        """The workers' answers to a ping, asked at most every READY_CACHE_SECONDS (probes do not pile up)."""
        if time.monotonic() - asked["at"] >= READY_CACHE_SECONDS and asking.acquire(blocking=False):
            try:
                asked["replies"] = list(closes.app.control.ping(timeout=1.0) or [])
                asked["at"] = time.monotonic()
            finally:
                asking.release()
        return list(asked["replies"])

    @app.get("/readyz", include_in_schema=False)
    def readyz(request: Request) -> JSONResponse:
        try:
            closes.redis.ping()
        except redis.RedisError:
            return error_response(request.state.request_id, 503, "not_ready", "Redis is unreachable")
        replies = worker_replies()
        if not replies:
            return error_response(request.state.request_id, 503, "not_ready", "no worker answers")
        return JSONResponse({"status": "ready", "workers": len(replies)})


ORG_QUERY = Query(None, max_length=40, description="The org (default: 'default' when granted, else the "
                  "credential's only org).")


def _close_routes(app: FastAPI, orgs: OrgClients, settings: IntakeSettings, waits: WaitSlots) -> None:
    @app.post("/v1/closes", status_code=202,
              responses={200: {"description": "the outcome record, when `wait` was given and it ended in time"},
                         404: {"description": "an org this credential is not granted (as for one that does not "
                                              "exist)"},
                         503: {"description": "too many requests wait already (`Retry-After`); nothing enqueued"}})
    async def post_close(request: Request, body: CloseRequest, who: Who,
                         wait: float = Query(0.0, ge=0, le=settings.intake_max_wait_seconds,
                                             description="seconds to wait for the outcome"),
                         org: str | None = ORG_QUERY) -> Any:
        """The org is the JSON field ``org`` or the query's ``org`` (a Data Action's URL may carry it); both given,
        they must agree (before, the query's was ignored and the close went to the credential's default org)."""
        if org is not None and body.org is not None and org != body.org:
            raise IntakeError(422, "invalid_request", "the query's org and the body's org differ")
        org = who.org(body.org if body.org is not None else org, "no such org")
        closes = orgs[org]
        try:
            conversation_id = parse_conversation_id(body.conversationId)
        except InvalidConversationId as exc:
            raise IntakeError(422, "invalid_conversation_id", str(exc), [body.conversationId[:100]]) from None
        options = {"wrapup_code": body.wrapupCode} if body.wrapupCode else {}
        if wait > 0 and not waits.take():
            raise IntakeError(503, "too_many_waits", f"{waits.limit} requests wait for outcomes already; nothing was "
                              "enqueued: retry later, or send without wait and poll statusUrl",
                              headers={"Retry-After": "1"})
        try:
            task_id = await run_in_threadpool(closes.send_close, conversation_id, options)
            accepted = CloseAccepted(taskId=task_id, conversationId=conversation_id,
                                     statusUrl=f"/v1/conversations/{conversation_id}{org_query(org)}",
                                     label=body.label, org=org)
            if wait > 0:
                result = await wait_for_outcome(closes, task_id, wait, request)
                if result is not None:
                    return JSONResponse(result.as_dict(), status_code=200)
            return JSONResponse(accepted.model_dump(), status_code=202)
        finally:
            if wait > 0:
                waits.give_back()

    @app.get("/v1/conversations/{conversation_id}")
    def get_conversation(conversation_id: str, who: Who, org: str | None = ORG_QUERY) -> dict[str, Any]:
        missing = "no outcome recorded for this conversation (yet)"
        closes = orgs[who.org(org, missing)]
        try:
            canonical = parse_conversation_id(conversation_id)
        except InvalidConversationId as exc:
            raise IntakeError(422, "invalid_conversation_id", str(exc), [conversation_id[:100]]) from None
        record = closes.outcome(canonical)
        if record is None:
            raise IntakeError(404, "not_found", missing)
        return record.as_dict()


def _batch_routes(app: FastAPI, orgs: OrgClients, settings: IntakeSettings, enqueue: BackgroundEnqueue) -> None:
    keys = IdempotencyKeys(orgs.base.redis, settings.intake_idempotency_ttl_seconds)

    def stage(ids: list[object], label: str | None, org: str) -> tuple[StagedBatch, BatchAccepted]:
        staged = orgs[org].batches_writer.stage(ids, options=validate_options(None), label=label or "intake",
                                                source="http intake")
        check = staged.check
        accepted = BatchAccepted(batchId=staged.batch_id, statusUrl=f"/v1/batches/{staged.batch_id}{org_query(org)}",
                                 resultsUrl=f"/v1/batches/{staged.batch_id}/results{org_query(org)}",
                                 total=check.valid + check.invalid, invalid=check.invalid,
                                 invalidSamples=check.samples[:MAX_REPORTED_INVALID], org=org)
        return staged, accepted

    @app.post("/v1/batches", status_code=202, response_model=BatchAccepted,
              responses={409: {"description": "a request with this Idempotency-Key is still being stored"},
                         422: {"description": "invalid input, or an Idempotency-Key reused with another body"},
                         503: {"description": "this intake process publishes its limit of batches (Retry-After)"}},
              openapi_extra={"requestBody": {"content": {
                  "application/json": {"schema": BatchRequest.model_json_schema()},
                  "text/plain": {"schema": {"type": "string", "description": "one conversation id per line"}},
                  "text/csv": {"schema": {"type": "string", "description": "a conversationId column"}},
                  "application/x-ndjson": {"schema": {"type": "string",
                                                      "description": "JSON Lines, a conversation_id key"}}}},
                  "parameters": [{"name": "label", "in": "query", "required": False,
                                  "schema": {"type": "string", "maxLength": 200},
                                  "description": "the batch's label, for a text body"},
                                 {"name": "column", "in": "query", "required": False,
                                  "schema": {"type": "string", "maxLength": 100},
                                  "description": "the CSV column or JSON Lines key holding the ids"},
                                 {"name": "Idempotency-Key", "in": "header", "required": False,
                                  "schema": {"type": "string", "maxLength": 200},
                                  "description": "a retry with the same key (and body) returns the same batch"}]})
    async def post_batch(request: Request, who: Who, org: str | None = ORG_QUERY) -> JSONResponse:
        """Validate and store the ids, answer 202, publish the closes in the background. The org is the JSON
        field ``org`` or the query's ``org`` (for text and CSV bodies); both given, they must agree."""
        key = request.headers.get("idempotency-key")
        if key is not None and not is_valid_key(key):
            raise IntakeError(422, "invalid_idempotency_key", "Idempotency-Key: 1 to 200 printable ASCII characters")
        content_type = request.headers.get("content-type", "application/json").split(";")[0].strip().lower()
        query_label = request.query_params.get("label")  # the label of a text/plain or text/csv upload
        if query_label is not None and len(query_label) > 200:
            raise IntakeError(422, "invalid_request", "label: at most 200 characters")
        column = upload_column(request.query_params.get("column"))  # of a CSV or JSON Lines body
        raw = await request.body()
        ids, label, body_org = await run_in_threadpool(parse_upload, raw, content_type, settings.intake_max_batch_ids,
                                                       column)
        label = label or query_label
        if org is not None and body_org is not None and org != body_org:
            raise IntakeError(422, "invalid_request", "the query's org and the body's org differ")
        chosen = who.org(body_org if body_org is not None else org, "no such org")
        credential = f"{who.credential}:{chosen}"  # an Idempotency-Key is the credential's, per org
        body_fingerprint, token = "", ""
        if key is not None:
            described = content_type + ("" if query_label is None else f";label={query_label}") + (
                "" if column is None else f";column={column}")  # the same key with another column is another body
            body_fingerprint = await run_in_threadpool(fingerprint, described, raw)
            claim, token = await run_in_threadpool(keys.claim, credential, key, body_fingerprint)
            if not claim.won:
                return _replay(claim)
        if not enqueue.reserve():
            if key is not None:
                await run_in_threadpool(keys.abandon, credential, key, token)
            raise IntakeError(503, "busy", "this intake publishes its limit of batches; retry later",
                              headers={"Retry-After": "5"})
        try:
            staged, accepted = await run_in_threadpool(stage, ids, label, chosen)
        except BaseException:
            enqueue.unreserve()
            if key is not None:
                await run_in_threadpool(keys.abandon, credential, key, token)
            raise
        enqueue.start(staged, orgs[chosen].batches_writer)  # the slot is the publisher's now
        body = accepted.model_dump()
        if key is not None:
            await run_in_threadpool(keys.complete, credential, key, body_fingerprint, 202, body)
        return JSONResponse(body, status_code=202)


def _batch_read_routes(app: FastAPI, orgs: OrgClients) -> None:
    missing = "no such batch (unknown, or older than the retention)"

    def batch_of(batch_id: str, org: str | None, who: Caller) -> Any:
        closes = orgs[who.org(org, missing)]  # another org's batch is answered as one that does not exist
        if not is_batch_id(batch_id):
            raise IntakeError(404, "not_found", missing)
        try:
            return closes.batch(batch_id)
        except BatchNotFound:
            raise IntakeError(404, "not_found", missing) from None

    @app.get("/v1/batches/{batch_id}")
    def get_batch(batch_id: str, who: Who, org: str | None = ORG_QUERY) -> dict[str, Any]:
        return dict(batch_of(batch_id, org, who).status().as_dict())

    @app.get("/v1/batches/{batch_id}/results",
             responses={200: {"content": {"application/x-ndjson": {}, "text/csv": {}}}})
    def get_results(batch_id: str, request: Request, who: Who, org: str | None = ORG_QUERY,
                    format: str | None = Query(None, pattern="^(csv|jsonl)$",
                                               description="csv or jsonl, as a download (instead of Accept)")
                    ) -> StreamingResponse:
        batch = batch_of(batch_id, org, who)
        wants_csv = format == "csv" or (format is None and "text/csv" in request.headers.get("accept", ""))
        items: Iterator[CloseResult] = batch.results()
        lines = csv_lines(items) if wants_csv else jsonl_lines(items)
        headers = {} if format is None else {
            "Content-Disposition": f'attachment; filename="batch-{batch_id}.{"csv" if wants_csv else "jsonl"}"'}
        return StreamingResponse(in_chunks(lines), media_type="text/csv" if wants_csv else "application/x-ndjson",
                                 headers=headers)

    @app.post("/v1/batches/{batch_id}/cancel")
    def cancel_batch(batch_id: str, who: Who, org: str | None = ORG_QUERY) -> dict[str, Any]:
        return dict(batch_of(batch_id, org, who).cancel().as_dict())
