"""Bounds on slow or oversized clients, below the intake's routes.

- ``BodyGuard`` (ASGI middleware): a request body over the limit gets 413, one not received within the body timeout
  gets 408, both in the intake's JSON error shape, whether the body declares its length or comes chunked. The app
  sees a disconnect and whatever it answers is dropped in favour of that error.
- ``HeaderTimeoutH11Protocol`` (uvicorn's h11 protocol): a connection that has not sent a complete request head
  within the header timeout after it opened (or after the first byte of its next request) is closed. uvicorn's own
  keep-alive timeout covers idle connections only; a client trickling header bytes would keep its connection for
  ever.

The connection limit is uvicorn's ``limit_concurrency`` (see ``uvicorn_options``).
"""

from __future__ import annotations

import asyncio
import functools
import uuid
from typing import Any

import h11
from fastapi.responses import JSONResponse
from prometheus_client import Counter
from starlette.datastructures import MutableHeaders
from starlette.types import ASGIApp, Message, Receive, Scope, Send
from uvicorn.protocols.http.h11_impl import H11Protocol

from genesys_closer.config.settings import IntakeSettings


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
    """The intake's one error shape: ``{"error": {"code", "message", "requestId", "details"?}}``."""
    body: dict[str, Any] = {"error": {"code": code, "message": message, "requestId": request_id}}
    if details is not None:
        body["error"]["details"] = details
    return JSONResponse(body, status_code=status, headers={"X-Request-Id": request_id, **(headers or {})})


def request_id(scope: Scope) -> str:
    """The request's id (set by ``RequestIdAndMetrics``; ``request.state.request_id`` in the routes)."""
    state = scope.setdefault("state", {})
    if "request_id" not in state:
        state["request_id"] = uuid.uuid4().hex
    return str(state["request_id"])


class RequestIdAndMetrics:
    """Gives every request an id (``X-Request-Id`` on every answer) and counts answers by route and status.

    A plain ASGI middleware rather than ``@app.middleware("http")``: Starlette's BaseHTTPMiddleware hides a
    client's disconnect from ``request.is_disconnected()``, which the ``?wait=`` polls rely on."""

    def __init__(self, app: ASGIApp, counter: Counter) -> None:
        self.app = app
        self.counter = counter

    async def __call__(self, scope: Scope, receive: Receive, send: Send) -> None:
        if scope["type"] != "http":
            await self.app(scope, receive, send)
            return
        rid = request_id(scope)
        status = 500

        async def send_with_id(message: Message) -> None:
            nonlocal status
            if message["type"] == "http.response.start":
                status = int(message["status"])
                MutableHeaders(scope=message)["X-Request-Id"] = rid
            await send(message)

        try:
            await self.app(scope, receive, send_with_id)
        finally:
            route = scope.get("route")
            self.counter.labels(getattr(route, "path", "unmatched"), str(status)).inc()


class BodyGuard:
    """Refuse request bodies over ``limit`` bytes (413) or slower than ``timeout_seconds`` in all (408)."""

    def __init__(self, app: ASGIApp, limit: int, timeout_seconds: float) -> None:
        self.app = app
        self.limit = limit
        self.timeout_seconds = timeout_seconds

    async def __call__(self, scope: Scope, receive: Receive, send: Send) -> None:
        if scope["type"] != "http":
            await self.app(scope, receive, send)
            return
        declared = dict(scope.get("headers") or []).get(b"content-length")
        if declared is not None and declared.isdigit() and int(declared) > self.limit:
            await self._refuse(scope, receive, send, 413)
            return
        loop = asyncio.get_running_loop()
        deadline = loop.time() + self.timeout_seconds
        seen = 0
        body_done = False
        refused: int | None = None  # the status to answer instead of the app's
        started = False

        async def guarded_receive() -> Message:
            nonlocal seen, body_done, refused
            if refused is not None:
                return {"type": "http.disconnect"}
            if body_done:  # after the body, receive only waits for the client to go: no deadline
                return await receive()
            try:
                message = await asyncio.wait_for(receive(), max(0.0, deadline - loop.time()))
            except TimeoutError:
                refused = 408
                return {"type": "http.disconnect"}
            if message["type"] == "http.request":
                seen += len(message.get("body", b""))
                body_done = not message.get("more_body", False)
                if seen > self.limit:
                    refused = 413
                    return {"type": "http.disconnect"}
            return message

        async def guarded_send(message: Message) -> None:
            nonlocal started
            if refused is not None and not started:
                return  # the app's answer to the disconnect it saw; ours goes out instead
            if message["type"] == "http.response.start":
                started = True
            await send(message)

        try:
            await self.app(scope, guarded_receive, guarded_send)
        except Exception:
            if refused is None or started:
                raise
        if refused is not None and not started:
            await self._refuse(scope, receive, send, refused)

    async def _refuse(self, scope: Scope, receive: Receive, send: Send, status: int) -> None:
        if status == 413:
            response = error_response(request_id(scope), 413, "body_too_large",
                                      f"request body over {self.limit} bytes")
        else:
            response = error_response(request_id(scope), 408, "body_timeout",
                                      f"request body not received within {self.timeout_seconds:g} s",
                                      headers={"Connection": "close"})
        await response(scope, receive, send)


class HeaderTimeoutH11Protocol(H11Protocol):
    """uvicorn's h11 protocol, closing connections that do not send a complete request head in time."""

    def __init__(self, *args: Any, header_timeout_seconds: float, **kwargs: Any) -> None:
        super().__init__(*args, **kwargs)
        self.header_timeout_seconds = header_timeout_seconds
        self._header_timer: asyncio.TimerHandle | None = None

    def connection_made(self, transport: asyncio.Transport) -> None:  # type: ignore[override]
        super().connection_made(transport)
        self._arm_header_timer()

    def data_received(self, data: bytes) -> None:
        super().data_received(data)
        if self.conn.their_state is not h11.IDLE:  # the request head is complete
            self._disarm_header_timer()
        elif self._header_timer is None:  # the first bytes of a keep-alive connection's next request head
            self._arm_header_timer()

    def connection_lost(self, exc: Exception | None) -> None:
        self._disarm_header_timer()
        super().connection_lost(exc)

    def _arm_header_timer(self) -> None:
        self._disarm_header_timer()
        self._header_timer = self.loop.call_later(self.header_timeout_seconds, self._header_timeout)

    def _disarm_header_timer(self) -> None:
        if self._header_timer is not None:
            self._header_timer.cancel()
            self._header_timer = None

    def _header_timeout(self) -> None:
        self._header_timer = None
        if self.conn.their_state is h11.IDLE and not self.transport.is_closing():
            self.transport.close()


def uvicorn_options(settings: IntakeSettings) -> dict[str, Any]:
    """The uvicorn options that bound slow clients and connections (the same for one process or several)."""
    return {
        "http": functools.partial(HeaderTimeoutH11Protocol,
                                  header_timeout_seconds=settings.intake_header_timeout_seconds),
        "timeout_keep_alive": settings.intake_keepalive_seconds,
        "limit_concurrency": settings.intake_max_connections,
        "h11_max_incomplete_event_size": 16 * 1024,  # a request head over 16 KiB is refused (uvicorn's default)
    }


# The text bodies a batch upload takes, and how each is read (``producer.inputs``).
UPLOAD_FORMATS = {"text/plain": "lines", "text/csv": "csv", "application/x-ndjson": "jsonl",
                  "application/jsonl": "jsonl"}
MAX_COLUMN = 100


def upload_column(value: str | None) -> str | None:
    """The ``column`` query parameter: the CSV column or JSON Lines key holding the ids (as the CLI's --column)."""
    if value is not None and not 0 < len(value) <= MAX_COLUMN:
        raise IntakeError(422, "invalid_request", f"column: 1 to {MAX_COLUMN} characters")
    return value
