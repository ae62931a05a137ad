"""The HTTP intake: ``genesys-closer serve`` lets apps in any language, and Genesys Cloud itself (Web Services Data
Actions called from Architect flows or from workflows started by triggers), request closes over HTTP.

It needs only Redis and its own credentials (bearer tokens, optionally Basic), like every producer. Bad input is
answered before anything is enqueued, in one error shape with a request id; options from callers follow the task
rules (they can only narrow what the workers allow). The OpenAPI document is at ``/openapi.json``, the docs at
``/docs``.
"""

from __future__ import annotations

import base64
import binascii
import hashlib
import hmac
import io
import logging
import math
import time
import uuid
from collections.abc import Awaitable, Callable, Iterator
from typing import Any

import redis
from fastapi import Depends, FastAPI, Query, Request
from fastapi.exceptions import RequestValidationError
from fastapi.responses import JSONResponse, Response, StreamingResponse
from prometheus_client import CONTENT_TYPE_LATEST, CollectorRegistry, Counter, generate_latest
from pydantic import BaseModel, ConfigDict, Field
from starlette.exceptions import HTTPException as StarletteHTTPException
from starlette.types import ASGIApp, Message, Receive, Scope, Send

from genesys_closer.config.settings import IntakeSettings
from genesys_closer.producer.api import BatchNotFound, CloseClient
from genesys_closer.producer.export import csv_lines, jsonl_lines
from genesys_closer.producer.inputs import InputError, read_ids
from genesys_closer.worker.batches import IdCheck
from genesys_closer.worker.closing.outcomes import CloseResult
from genesys_closer.worker.genesys.errors import InvalidConversationId
from genesys_closer.worker.genesys.ids import parse_conversation_id
from genesys_closer.worker.genesys.rate_limit import RedisRateLimiter
from genesys_closer.worker.stores.batch_store import is_batch_id

log = logging.getLogger("genesys_closer.intake")
MAX_REPORTED_INVALID = 20
BURST_SECONDS = 1.0  # how far ahead a caller may reserve slots before it is told 429
API_VERSION = "v1"


class IntakeError(Exception):
    """An answer other than success, in the intake's one error shape."""

    def __init__(self, status: int, code: str, message: str, details: Any = None,
                 headers: dict[str, str] | None = None) -> None:
        super().__init__(status, code, message)
        self.status = status
        self.code = code
        self.message = message
        self.details = details
        self.headers = headers or {}


def error_response(request_id: str, status: int, code: str, message: str, details: Any = None,
                   headers: dict[str, str] | None = None) -> JSONResponse:
    body: dict[str, Any] = {"error": {"code": code, "message": message, "requestId": request_id}}
    if details is not None:
        body["error"]["details"] = details
    return JSONResponse(body, status_code=status, headers={"X-Request-Id": request_id, **(headers or {})})


class CloseRequest(BaseModel):
    model_config = ConfigDict(extra="forbid")
    conversationId: str = Field(max_length=100, description="The conversation id (a UUID).")
    wrapupCode: str | None = Field(None, max_length=500,
                                   description="Wrap-up code for agents left owing one.")
    label: str | None = Field(None, max_length=200, description="Free text, echoed back.")


class BatchRequest(BaseModel):
    model_config = ConfigDict(extra="forbid")
    conversationIds: list[Any] = Field(description="Conversation ids; invalid ones are reported, the rest run.")
    label: str | None = Field(None, max_length=200)


class CloseAccepted(BaseModel):
    taskId: str
    conversationId: str
    statusUrl: str
    label: str | None = None


class BatchAccepted(BaseModel):
    batchId: str
    statusUrl: str
    resultsUrl: str
    total: int | None
    invalid: int
    invalidSamples: list[str]


class BodyLimit:
    """Refuse request bodies over ``limit`` bytes with 413 (by Content-Length, and while streaming)."""

    def __init__(self, app: ASGIApp, limit: int) -> None:
        self.app = app
        self.limit = limit

    async def __call__(self, scope: Scope, receive: Receive, send: Send) -> None:
        if scope["type"] != "http":
            await self.app(scope, receive, send)
            return
        declared = dict(scope.get("headers") or []).get(b"content-length")
        if declared is not None and declared.isdigit() and int(declared) > self.limit:
            await self._refuse(scope, receive, send)
            return
        seen = 0

        async def limited() -> Message:
            nonlocal seen
            message = await receive()
            if message["type"] == "http.request":
                seen += len(message.get("body", b""))
                if seen > self.limit:
                    raise IntakeError(413, "body_too_large", f"request body over {self.limit} bytes")
            return message

        await self.app(scope, limited, send)

    async def _refuse(self, scope: Scope, receive: Receive, send: Send) -> None:
        response = error_response(uuid.uuid4().hex, 413, "body_too_large", f"request body over {self.limit} bytes")
        await response(scope, receive, send)


def schema_problems(errors: Any) -> list[dict[str, str]]:
    """Pydantic's validation errors as the intake reports them: field and problem, at most 20."""
    return [{"field": ".".join(str(part) for part in e.get("loc", ()) if part != "body"),
             "problem": str(e.get("msg", ""))[:200]} for e in list(errors)[:MAX_REPORTED_INVALID]]


def _digest(credential: str) -> str:
    return hashlib.sha256(credential.encode()).hexdigest()[:12]


class Guard:
    """Authentication (bearer tokens compared in constant time, optional Basic) and a per-credential rate limit."""

    def __init__(self, settings: IntakeSettings, client: redis.Redis) -> None:
        self.tokens = [token.encode() for token in settings.bearer_tokens()]
        basic = settings.basic_credentials()
        self.basic = None if basic is None else f"{basic[0]}:{basic[1]}".encode()
        self.redis = client
        self.limit = settings.intake_rate_limit_per_minute
        self._limiters: dict[str, RedisRateLimiter] = {}

    def identify(self, request: Request) -> str:
        """The digest of the credential used, or IntakeError 401 (no hint which part was wrong)."""
        header = request.headers.get("authorization", "")
        scheme, _, value = header.partition(" ")
        candidate = value.strip().encode()
        if scheme.lower() == "bearer" and any(hmac.compare_digest(candidate, t) for t in self.tokens):
            return _digest(value.strip())
        if scheme.lower() == "basic" and self.basic is not None:
            try:
                decoded = base64.b64decode(candidate, validate=True)
            except (binascii.Error, ValueError):
                decoded = b""
            if hmac.compare_digest(decoded, self.basic):
                return _digest(decoded.decode(errors="replace"))
        raise IntakeError(401, "unauthorized", "authentication required",
                          headers={"WWW-Authenticate": 'Bearer realm="genesys-closer"'})

    def admit(self, credential: str) -> None:
        limiter = self._limiters.get(credential)
        if limiter is None:
            limiter = RedisRateLimiter(self.redis, f"intake-{credential}", self.limit, headroom=1.0)
            self._limiters[credential] = limiter
        grant = limiter.reserve(BURST_SECONDS)  # a short burst waits for its slot; beyond that: 429
        if grant.granted and grant.wait_seconds > 0:
            time.sleep(grant.wait_seconds)
        if not grant.granted:
            retry = max(1, math.ceil(grant.wait_seconds))
            raise IntakeError(429, "rate_limited", f"too many requests for this credential; retry in {retry} s",
                              headers={"Retry-After": str(retry)})


def _ids_from_text(body: bytes, content_type: str) -> list[object]:
    """IDs from a text/plain body (one per line) or text/csv (a conversationId / conversation_id / id column)."""
    text = body.decode("utf-8-sig", errors="strict")
    fmt = "csv" if "csv" in content_type else "lines"
    try:
        return list(read_ids(io.StringIO(text), fmt=fmt, name="request body"))
    except InputError as exc:
        raise IntakeError(422, "invalid_body", str(exc)[:500]) from None


def create_app(settings: IntakeSettings, client: CloseClient | None = None) -> FastAPI:
    """The intake's ASGI app (served by ``genesys-closer serve`` with uvicorn)."""
    closes = client or CloseClient(settings)
    guard = Guard(settings, closes.redis)
    registry = CollectorRegistry()
    requests_total = Counter("genesys_closer_intake_requests_total", "Intake requests, by route and status.",
                             ["route", "status"], registry=registry)
    app = FastAPI(title="genesys-closer intake", version=API_VERSION,
                  description="Request closes of Genesys Cloud web messaging conversations over HTTP. "
                              "Authenticate with a bearer token (INTAKE_TOKENS) or Basic credentials.")

    @app.middleware("http")
    async def request_id_and_metrics(request: Request, call_next: Callable[[Request], Awaitable[Response]]
                                     ) -> Response:
        request.state.request_id = uuid.uuid4().hex
        try:
            response = await call_next(request)
        except IntakeError as exc:  # raised while the body streamed in (BodyLimit)
            response = error_response(request.state.request_id, exc.status, exc.code, exc.message, exc.details,
                                      exc.headers)
        response.headers["X-Request-Id"] = request.state.request_id
        route = request.scope.get("route")
        requests_total.labels(getattr(route, "path", "unmatched"), str(response.status_code)).inc()
        return response

    _error_handlers(app)

    def caller(request: Request) -> str:
        credential = guard.identify(request)
        guard.admit(credential)
        return credential

    authenticated = [Depends(caller)]
    _health_routes(app, closes)
    _close_routes(app, closes, settings, authenticated)
    _batch_routes(app, closes, settings, authenticated)

    @app.get("/metrics", include_in_schema=False, dependencies=authenticated)
    def metrics() -> Response:
        return Response(generate_latest(registry), media_type=CONTENT_TYPE_LATEST)

    app.add_middleware(BodyLimit, limit=settings.intake_max_body_bytes)
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

def _health_routes(app: FastAPI, closes: CloseClient) -> None:
    @app.get("/healthz", include_in_schema=False)
    def healthz() -> dict[str, str]:
        return {"status": "ok"}

    @app.get("/readyz", include_in_schema=False)
    def readyz(request: Request) -> JSONResponse:
        try:
            closes.redis.ping()
        except redis.RedisError:
            return error_response(request.state.request_id, 503, "not_ready", "Redis is unreachable")
        replies = closes.app.control.ping(timeout=1.0)
        if not replies:
            return error_response(request.state.request_id, 503, "not_ready", "no worker answers")
        return JSONResponse({"status": "ready", "workers": len(replies)})


def _close_routes(app: FastAPI, closes: CloseClient, settings: IntakeSettings, authenticated: list[Any]) -> None:
    @app.post("/v1/closes", status_code=202, dependencies=authenticated,
              responses={200: {"description": "the outcome record, when `wait` was given and it ended in time"}})
    def post_close(body: CloseRequest, wait: float = Query(0.0, ge=0, le=settings.intake_max_wait_seconds,
                                                                description="seconds to wait for the outcome")
                   ) -> Any:
        try:
            conversation_id = parse_conversation_id(body.conversationId)
        except InvalidConversationId as exc:
            raise IntakeError(422, "invalid_conversation_id", str(exc), [body.conversationId[:100]]) from None
        options = {"wrapup_code": body.wrapupCode} if body.wrapupCode else {}
        task_id = closes.send_close(conversation_id, options)
        accepted = CloseAccepted(taskId=task_id, conversationId=conversation_id,
                                 statusUrl=f"/v1/conversations/{conversation_id}", label=body.label)
        if wait > 0:
            try:
                return JSONResponse(closes.result(task_id, timeout=wait).as_dict(), status_code=200)
            except TimeoutError:
                pass
        return JSONResponse(accepted.model_dump(), status_code=202)

    @app.get("/v1/conversations/{conversation_id}", dependencies=authenticated)
    def get_conversation(conversation_id: str) -> dict[str, Any]:
        try:
            canonical = parse_conversation_id(conversation_id)
        except InvalidConversationId as exc:
            raise IntakeError(422, "invalid_conversation_id", str(exc), [conversation_id[:100]]) from None
        record = closes.outcome(canonical)
        if record is None:
            raise IntakeError(404, "not_found", "no outcome recorded for this conversation (yet)")
        return record.as_dict()


def _batch_routes(app: FastAPI, closes: CloseClient, settings: IntakeSettings, authenticated: list[Any]) -> None:
    @app.post("/v1/batches", status_code=202, dependencies=authenticated, response_model=BatchAccepted,
              openapi_extra={"requestBody": {"content": {
                  "application/json": {"schema": BatchRequest.model_json_schema()},
                  "text/plain": {"schema": {"type": "string", "description": "one conversation id per line"}},
                  "text/csv": {"schema": {"type": "string", "description": "a conversationId column"}}}}})
    async def post_batch(request: Request) -> JSONResponse:
        content_type = request.headers.get("content-type", "application/json").split(";")[0].strip().lower()
        raw = await request.body()
        label: str | None = None
        if content_type == "application/json":
            try:
                parsed = BatchRequest.model_validate_json(raw)
            except ValueError as exc:
                raise IntakeError(422, "invalid_request", "the request does not match the schema",
                                  schema_problems(getattr(exc, "errors", list)())) from None
            ids, label = parsed.conversationIds, parsed.label
        elif content_type in {"text/plain", "text/csv"}:
            try:
                ids = _ids_from_text(raw, content_type)
            except UnicodeDecodeError:
                raise IntakeError(422, "invalid_body", "the body is not UTF-8 text") from None
        else:
            raise IntakeError(415, "unsupported_media_type", "send application/json, text/plain or text/csv")
        if len(ids) > settings.intake_max_batch_ids:
            raise IntakeError(413, "too_many_ids", f"at most {settings.intake_max_batch_ids} ids per batch")
        if not ids:
            raise IntakeError(422, "empty_batch", "no conversation ids")
        batch = closes.close_many(ids, label=label or "intake", source="http intake")
        check = batch.check or IdCheck()
        accepted = BatchAccepted(batchId=batch.id, statusUrl=f"/v1/batches/{batch.id}",
                                 resultsUrl=f"/v1/batches/{batch.id}/results", total=check.valid + check.invalid,
                                 invalid=check.invalid, invalidSamples=check.samples[:MAX_REPORTED_INVALID])
        return JSONResponse(accepted.model_dump(), status_code=202)

    def batch_of(batch_id: str) -> Any:
        if not is_batch_id(batch_id):
            raise IntakeError(404, "not_found", "no such batch")
        try:
            return closes.batch(batch_id)
        except BatchNotFound:
            raise IntakeError(404, "not_found", "no such batch (unknown, or older than the retention)") from None

    @app.get("/v1/batches/{batch_id}", dependencies=authenticated)
    def get_batch(batch_id: str) -> dict[str, Any]:
        return dict(batch_of(batch_id).status().as_dict())

    @app.get("/v1/batches/{batch_id}/results", dependencies=authenticated,
             responses={200: {"content": {"application/x-ndjson": {}, "text/csv": {}}}})
    def get_results(batch_id: str, request: Request) -> StreamingResponse:
        batch = batch_of(batch_id)
        wants_csv = "text/csv" in request.headers.get("accept", "")
        items: Iterator[CloseResult] = batch.results()
        lines = csv_lines(items) if wants_csv else jsonl_lines(items)
        return StreamingResponse(lines, media_type="text/csv" if wants_csv else "application/x-ndjson")

    @app.post("/v1/batches/{batch_id}/cancel", dependencies=authenticated)
    def cancel_batch(batch_id: str) -> dict[str, Any]:
        return dict(batch_of(batch_id).cancel().as_dict())
