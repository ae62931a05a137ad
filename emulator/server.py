"""The emulator's HTTP server: one process plays both ``login.<env>`` and ``api.<env>``, for every org it holds.

Genesys API and OAuth requests go through faults, authentication, the per-token rate window and permission
checks, in that order, and are counted in the statistics; the admin API under ``/__emulator__/`` is not. A token
sees only its own org: another org's conversation id is answered 404 ``not.found``, as a real org answers for an
id it does not hold, and analytics reads and queries see only the token's org.
"""

from __future__ import annotations

import base64
import binascii
import json
import math
import sys
import threading
import time
import uuid
from collections.abc import Callable
from dataclasses import asdict
from http import HTTPStatus
from http.server import BaseHTTPRequestHandler, ThreadingHTTPServer
from typing import Any
from urllib.parse import parse_qs, unquote

from genesys_closer.emulator import analytics
from genesys_closer.emulator.model import (
    CLOSED_STATES,
    KINDS,
    RESTRICTED_DIVISION_ID,
    render_conversation,
    render_message_conversation,
)
from genesys_closer.emulator.state import (
    ALL_PERMISSIONS,
    DEFAULT_ORG,
    EmulatorConfig,
    EmulatorState,
    Faults,
    Org,
    OrgSpec,
    Token,
)

MAX_BODY_BYTES = 512_000  # request.bytes.max
ROUTES: list[tuple[str, tuple[str, ...], str]] = []  # (method, segments, template)
Reply = tuple[int, Any, dict[str, str]]

for _method, _template in [
    ("POST", "/oauth/token"),
    ("GET", "/api/v2/conversations/messages/{conversationId}"),
    ("PATCH", "/api/v2/conversations/messages/{conversationId}"),
    ("PATCH", "/api/v2/conversations/messages/{conversationId}/participants/{participantId}"),
    ("POST", "/api/v2/conversations/{conversationId}/disconnect"),
    ("GET", "/api/v2/conversations/{conversationId}"),
    ("POST", "/api/v2/analytics/conversations/details/query"),
    ("GET", "/api/v2/analytics/conversations/details"),
]:
    ROUTES.append((_method, tuple(_template.strip("/").split("/")), _template))

PERMISSIONS: dict[str, tuple[str, ...]] = {
    "PATCH /api/v2/conversations/messages/{conversationId}": (
        "conversation:communication:disconnect", "conversation:message:park"),
    "PATCH /api/v2/conversations/messages/{conversationId}/participants/{participantId}": (
        "conversation:participant:wrapup", "conversation:call:record", "conversation:communication:disconnect"),
    "POST /api/v2/conversations/{conversationId}/disconnect": ("conversation:communication:disconnect",),
    "GET /api/v2/conversations/{conversationId}": ("conversation:communication:view",),
    "POST /api/v2/analytics/conversations/details/query": (
        "analytics:conversationDetail:view", "analytics:agentConversationDetail:view"),
    "GET /api/v2/analytics/conversations/details": (
        "analytics:conversationDetail:view", "analytics:agentConversationDetail:view"),
}


def resolve(method: str, path: str) -> tuple[str, dict[str, str]]:
    """Match a request to a route template; unknown paths map to ``<unmatched>``."""
    segments = path.strip("/").split("/")
    for route_method, pattern, template in ROUTES:
        if route_method != method or len(pattern) != len(segments):
            continue
        params: dict[str, str] = {}
        for expected, actual in zip(pattern, segments, strict=True):
            if expected.startswith("{"):
                params[expected[1:-1]] = unquote(actual)
            elif expected != actual:
                break
        else:
            return template, params
    return "<unmatched>", {}


def error_body(status: int, code: str, message: str, params: dict[str, str] | None = None) -> dict[str, Any]:
    """Genesys ``ErrorBody``."""
    body: dict[str, Any] = {
        "message": message, "code": code, "status": status, "messageParams": params or {},
        "contextId": str(uuid.uuid4()), "details": [], "errors": [],
    }
    return body


def not_found() -> Reply:
    return 404, error_body(404, "not.found", "The requested operation failed with status 404"), {}


class EmulatorHTTPServer(ThreadingHTTPServer):
    daemon_threads = True
    allow_reuse_address = True
    request_queue_size = 256

    def __init__(self, address: tuple[str, int], state: EmulatorState) -> None:
        super().__init__(address, RequestHandler)
        self.state = state

    def handle_error(self, request: Any, client_address: Any) -> None:
        """A client that gave up (timeout) and closed its socket is normal here; anything else is reported."""
        if isinstance(sys.exc_info()[1], ConnectionError):
            return
        super().handle_error(request, client_address)


class RequestHandler(BaseHTTPRequestHandler):
    protocol_version = "HTTP/1.1"
    disable_nagle_algorithm = True  # headers and body must not wait for the client's delayed ACK
    server: EmulatorHTTPServer
    server_version = "genesys-emulator"
    sys_version = ""

    def log_message(self, format: str, *args: Any) -> None:
        """Quiet: the request log is in the statistics."""

    def do_GET(self) -> None:
        self._dispatch("GET")

    def do_POST(self) -> None:
        self._dispatch("POST")

    def do_PATCH(self) -> None:
        self._dispatch("PATCH")

    def do_PUT(self) -> None:
        self._dispatch("PUT")

    def do_DELETE(self) -> None:
        self._dispatch("DELETE")

    # -- plumbing ----------------------------------------------------------------------------------------------
    def _read_body(self) -> bytes | None:
        length = int(self.headers.get("Content-Length") or 0)
        if length > MAX_BODY_BYTES:
            return None
        return self.rfile.read(length) if length else b""

    def _send(self, status: int, body: Any, headers: dict[str, str]) -> None:
        data = b"" if body is None else json.dumps(body).encode()
        lines = [f"{self.protocol_version} {status} {HTTPStatus(status).phrase}",
                 f"Server: {self.server_version}", f"Date: {self.date_time_string()}",
                 f"Content-Length: {len(data)}"]
        if body is not None:
            lines.append("Content-Type: application/json")
        lines += [f"{name}: {value}" for name, value in headers.items()]
        if self.close_connection:
            lines.append("Connection: close")
        self.wfile.write(("\r\n".join(lines) + "\r\n\r\n").encode("latin-1") + data)  # one write per response

    def _dispatch(self, method: str) -> None:
        path, _, query = self.path.partition("?")
        raw = self._read_body()
        if raw is None:
            self.close_connection = True
            self._send(413, error_body(413, "request.entity.too.large", "Request body too large"), {})
            return
        if path.startswith("/__emulator__/"):
            self._send(*self._admin(method, path, parse_qs(query), raw))
            return
        self._api(method, path, raw, parse_qs(query))

    # -- Genesys API and OAuth ---------------------------------------------------------------------------------
    def _api(self, method: str, path: str, raw: bytes, query: dict[str, list[str]]) -> None:
        state = self.server.state
        template, params = resolve(method, path)
        conversation_id = params.get("conversationId")
        if conversation_id is None and query.get("id"):  # a read by ids: the log names them all
            conversation_id = ",".join(query["id"])[:4000]
        faults = state.faults
        with state.lock:
            now = state.clock()
            dropped = now < faults.unavailable_until or (
                faults.drop_rate > 0 and state.rng.random() < faults.drop_rate)
            delay_ms = faults.latency_ms
            if faults.spike_rate > 0 and state.rng.random() < faults.spike_rate:
                delay_ms += faults.spike_ms
            if dropped:
                state.record(method, template, 0, conversation_id, None, self._claimed_org(template, raw))
        if dropped:
            self.close_connection = True
            return
        if delay_ms > 0:
            time.sleep(delay_ms / 1000)
        client_id: str | None = None
        with state.lock:
            org = self._claimed_org(template, raw)
            if template == "/oauth/token":
                status, body, headers = self._oauth(raw, now)
                state.token_requests += 1
            else:
                status, body, headers, client_id = self._authorized(method, template, params, raw, query)
            state.record(method, template, status, conversation_id, client_id, org)
        correlation = body.get("contextId") if isinstance(body, dict) and "contextId" in body else None
        headers.setdefault("ININ-Correlation-Id", correlation or str(uuid.uuid4()))
        self._send(status, body, headers)

    def _claimed_org(self, template: str, raw: bytes) -> str | None:
        """The org a request comes from, for the request log: its token's org, or for a token request the org of the
        client it names. None when it names no known token or client. Reads only (under the state's lock)."""
        state = self.server.state
        if template == "/oauth/token":
            client = state.clients.get(self._basic_client(raw)[0] or "")
            return None if client is None else client.org
        authorization = self.headers.get("Authorization", "")
        token = state.tokens.get(authorization[7:].strip()) if authorization.startswith("Bearer ") else None
        return None if token is None else token.org

    def _basic_client(self, raw: bytes) -> tuple[str | None, str | None]:
        """The client id and secret of a token request: the Basic header, else the form."""
        form = {k: v[0] for k, v in parse_qs(raw.decode("utf-8", "replace")).items()}
        client_id, secret = form.get("client_id"), form.get("client_secret")
        authorization = self.headers.get("Authorization", "")
        if authorization.startswith("Basic "):
            try:
                client_id, _, secret = base64.b64decode(authorization[6:]).decode().partition(":")
            except (binascii.Error, UnicodeDecodeError):
                client_id = secret = None
        return client_id, secret

    def _oauth(self, raw: bytes, now: float) -> Reply:
        state = self.server.state
        form = {k: v[0] for k, v in parse_qs(raw.decode("utf-8", "replace")).items()}
        if form.get("grant_type") != "client_credentials":
            return 400, {"error": "unsupported_grant_type", "description": "grant type not supported",
                         "error_description": "grant type not supported"}, {}
        client_id, secret = self._basic_client(raw)
        client = state.clients.get(client_id or "")
        if client is None:
            return 400, {"error": "invalid_client", "description": "client not found",
                         "error_description": "client not found"}, {}
        if secret != client.secret:
            return 401, {"error": "invalid_client", "description": "authentication failed",
                         "error_description": "authentication failed"}, {}
        allowed, reset = state.token_allowed(client.client_id, now)
        if not allowed:
            return 429, error_body(429, "too.many.requests.retry.after",
                                   f"Rate limit exceeded the maximum. Retry the request in [{reset}] seconds",
                                   {"seconds": str(reset)}), {"Retry-After": str(reset)}
        token, ttl = state.issue_token(client.client_id)
        return 200, {"access_token": token, "token_type": "bearer", "expires_in": ttl}, {}

    def _authorized(self, method: str, template: str, params: dict[str, str], raw: bytes,
                    query: dict[str, list[str]]) -> tuple[int, Any, dict[str, str], str | None]:
        state = self.server.state
        authorization = self.headers.get("Authorization", "")
        if not authorization.startswith("Bearer "):
            return 401, error_body(401, "authentication.required",
                                   "No authentication bearer token specified in authorization header."), {}, None
        now = state.clock()
        token_value = authorization[7:].strip()
        token: Token | None = state.tokens.get(token_value)
        if token is not None and token.expires_at <= now:
            del state.tokens[token_value]
            return 401, error_body(401, "credentials.expired", "The provided credentials have expired."), {}, None
        if token is None:
            return 401, error_body(401, "bad.credentials", "Invalid login credentials."), {}, None
        org = state.org(token.org)
        limit = state.rate_limit_of(org)
        allowed, count, reset = state.rate_check(token, now)
        headers = {
            "inin-ratelimit-allowed": str(limit),
            "inin-ratelimit-count": str(count),
            "inin-ratelimit-reset": str(reset),
        }
        faults = org.faults  # the default org's are the emulator's own (``state.faults``)
        storm = faults.storm_429_until > now
        if not allowed or storm or faults.burst_429 > 0:
            retry_after: int | None = reset
            if storm:
                retry_after = faults.storm_429_retry_after or max(1, math.ceil(faults.storm_429_until - now))
            elif allowed:
                faults.burst_429 -= 1
                retry_after = faults.burst_429_retry_after
            if retry_after is not None:
                headers["Retry-After"] = str(retry_after)
                body = error_body(429, "too.many.requests.retry.after",
                                  f"Rate limit exceeded the maximum. Retry the request in [{retry_after}] seconds",
                                  {"seconds": str(retry_after)})
            else:
                body = error_body(429, "too.many.requests",
                                  f"Rate limit exceeded the maximum [{limit}] requests within [60] seconds")
            return 429, body, headers, token.client_id
        if faults.error_rate > 0 and state.rng.random() < faults.error_rate:
            status = state.rng.choice([500, 502, 503, 504])
            codes = {500: "internal.server.error", 502: "bad.gateway", 503: "service.unavailable",
                     504: "gateway.timeout"}
            return status, error_body(status, codes[status],
                                      f"The requested operation failed with status {status}"), headers, \
                token.client_id
        required = PERMISSIONS.get(f"{method} {template}")
        client = state.clients[token.client_id]
        if required and not client.permissions.intersection(required):
            names = ", ".join(required)
            return 403, error_body(
                403, "missing.any.permissions",
                f"Unable to perform the requested action. You must have at least one of the following "
                f"permissions assigned: [{names}]",
                {"permissions": f"[{names}]"},
            ), headers, token.client_id
        status, body, extra = self._route(method, template, params, raw, now, query, org)
        headers.update(extra)
        if method == "PATCH" and template == "/api/v2/conversations/messages/{conversationId}":
            faults.patch_answered(now)
        return status, body, headers, token.client_id

    def _route(self, method: str, template: str, params: dict[str, str], raw: bytes, now: float,
               query: dict[str, list[str]], org: Org) -> Reply:
        """Answer an authorized request within ``org``, the token's: nothing of another org is seen."""
        state = self.server.state
        if template == "<unmatched>":
            return not_found()
        try:
            payload = json.loads(raw) if raw else None
        except ValueError:
            return 400, error_body(400, "bad.request", "The request could not be understood by the server "
                                   "due to malformed syntax."), {}
        lag = state.config.analytics_lag_ms / 1000
        variants = analytics.AnalyticsVariants(state.config.analytics_message_type,
                                               state.config.analytics_conversation_end,
                                               state.config.analytics_stuck_ended)
        if template == "/api/v2/analytics/conversations/details":
            ids = [cid for value in query.get("id", []) for cid in value.split(",") if cid]
            granted = {cid: c for cid, c in org.conversations.items() if c.division_id != RESTRICTED_DIVISION_ID}
            try:
                return 200, analytics.multi_get(granted, ids, now, max_ids=state.config.analytics_max_ids,
                                                lag_seconds=lag, variants=variants), {}
            except analytics.QueryError as exc:
                return 400, error_body(400, "bad.request", str(exc)), {}
        if template == "/api/v2/analytics/conversations/details/query":
            visible_to_client = [c for c in org.conversations.values() if c.division_id != RESTRICTED_DIVISION_ID]
            try:
                body = analytics.run_query(
                    visible_to_client, payload if isinstance(payload, dict) else {}, now,
                    max_page_size=state.config.max_page_size, max_interval_days=state.config.max_interval_days,
                    paging_cap=state.config.paging_cap, lag_seconds=lag, variants=variants)
            except (analytics.QueryError, TypeError, ValueError) as exc:
                return 400, error_body(400, "bad.request", str(exc)), {}
            return 200, body, {}
        conversation = org.conversations.get(params["conversationId"])
        if conversation is None:  # also another org's id: a real org does not hold it
            return not_found()
        if conversation.division_id == RESTRICTED_DIVISION_ID:
            if state.config.restricted_status == 404:
                return not_found()
            return 403, error_body(
                403, "missing.division.permission",
                "You are not authorized to perform the requested action on this conversation's division "
                f"[{conversation.division_id}]", {"division": conversation.division_id}), {}
        visible = conversation.visible_participants(now)
        if method == "GET" and template.startswith("/api/v2/conversations/messages/"):
            return 200, render_message_conversation(conversation, visible, state.config.participant_type_on), {}
        if method == "GET":
            return 200, render_conversation(conversation, visible), {}
        if template.endswith("/disconnect"):
            org.patches[conversation.id] += 1
            state.teardown(conversation, now)
            return 202, None, {}
        if template.endswith("{participantId}"):
            return self._patch_participant(conversation, params["participantId"], payload, now)
        if not isinstance(payload, dict) or payload.get("state") != "disconnected":
            return 400, error_body(400, "invalid.value",
                                   "Invalid value for state. On update, 'disconnected' is the only valid value.",
                                   {"fieldName": "state"}), {}
        org.patches[conversation.id] += 1
        if conversation.patched_at is None:
            conversation.patched_at = now
        if all(p.state in CLOSED_STATES for p in conversation.participants):
            return self._reclose(conversation)
        if not conversation.ignores_conversation_patch:
            state.disconnect_all(conversation, now)
        return 200, render_conversation(conversation, conversation.participants), {}

    def _reclose(self, conversation: Any) -> Reply:
        """The answer to a PATCH of a conversation that is already closed: undocumented, so configurable."""
        status = self.server.state.config.reclose_status
        if status == 200:
            return 200, render_conversation(conversation, conversation.participants), {}
        if status == 404:
            return not_found()
        if status == 400:
            return 400, error_body(400, "bad.request", "The conversation is not in a state that allows this "
                                   "change"), {}
        return 409, error_body(409, "conflict",
                               "The request conflicts with the current state of the target resource"), {}

    def _patch_participant(self, conversation: Any, participant_id: str, payload: Any, now: float) -> Reply:
        state = self.server.state
        participant = next((p for p in conversation.participants if p.id == participant_id), None)
        if participant is None:
            return not_found()
        if not isinstance(payload, dict):
            return 400, error_body(400, "bad.request", "A MediaParticipantRequest body is required"), {}
        wanted = payload.get("state")
        if wanted not in (None, "disconnected"):
            return 400, error_body(400, "invalid.value", f"Invalid participant state {wanted!r}",
                                   {"fieldName": "state"}), {}
        wrapup = payload.get("wrapup")
        if wrapup is not None and (not isinstance(wrapup, dict) or not wrapup.get("code")):
            return 400, error_body(400, "invalid.value", "wrapup.code is required", {"fieldName": "wrapup"}), {}
        codes = state.config.wrapup_codes
        if wrapup is not None and codes and wrapup.get("code") not in codes:
            return 400, error_body(400, "invalid.value", f"Wrap-up code [{wrapup.get('code')}] was not found",
                                   {"fieldName": "wrapup.code"}), {}
        conversation.before_change(now, state.config.consistency_delay_ms / 1000)
        if wanted == "disconnected":
            participant.disconnect(now, "client")
        if wrapup is not None:
            participant.apply_wrapup({k: wrapup[k] for k in ("code", "name", "notes", "tags", "durationSeconds")
                                      if k in wrapup}, now)
        conversation.remember(now)
        if payload.get("wrapupSkipped") is True:
            participant.wrapup_skipped = True
        return 202, None, {}

    # -- admin API (test-only, never counted) ------------------------------------------------------------------
    def _admin(self, method: str, path: str, query: dict[str, list[str]], raw: bytes) -> Reply:
        state = self.server.state
        action = path.removeprefix("/__emulator__/").strip("/")
        try:
            payload = json.loads(raw) if raw else {}
        except ValueError:
            return 400, {"error": "body is not JSON"}, {}
        try:
            with state.lock:
                return self._admin_locked(method, action, query, payload)
        except (ValueError, TypeError, KeyError) as exc:
            return 400, {"error": str(exc)}, {}

    def _admin_locked(self, method: str, action: str, query: dict[str, list[str]], payload: Any) -> Reply:
        """The admin API. Calls about conversations, clients, tokens and faults act in the org named by ``org``
        (the body's, or the query's for a GET), ``default`` when none is named; an unknown org is a 400."""
        state = self.server.state
        named = query.get("org", [None])[0] if method == "GET" else payload.get("org")
        if (method, action) == ("GET", "health"):
            return 200, {"ok": True}, {}
        if (method, action) == ("GET", "stats"):
            return 200, state.stats(), {}
        if (method, action) == ("GET", "requests"):
            since = int(query.get("since", ["0"])[0])
            rows = state.request_log[since:]
            return 200, {"next": since + len(rows), "requests": [
                {"t": t, "method": m, "route": r, "status": s, "conversation_id": c, "client_id": k, "org": o}
                for t, m, r, s, c, k, o in rows]}, {}
        if (method, action) == ("POST", "reset"):
            state.reset_stats()
            for token in state.tokens.values():
                token.window_start, token.window_count = 0.0, 0
            if payload.get("conversations"):
                for org in state.orgs.values():
                    org.conversations.clear()
            if payload.get("faults"):
                state.set_faults(asdict(Faults()))
                for org in state.orgs.values():
                    if org.name != DEFAULT_ORG:
                        org.faults, org.rate_limit_per_minute = Faults(), org.configured_rate_limit
            return 200, {"ok": True}, {}
        if (method, action) == ("GET", "orgs"):
            return 200, {"orgs": {name: state.org_stats(org, state.clock()) for name, org in state.orgs.items()}}, {}
        if (method, action) == ("POST", "orgs"):
            spec = OrgSpec(str(payload["name"]), str(payload["client_id"]), str(payload["client_secret"]),
                           None if payload.get("rate_limit_per_minute") is None
                           else int(payload["rate_limit_per_minute"]), tuple(payload.get("deny") or ()))
            state.add_org(spec)
            return 201, {"org": spec.name, "client_id": spec.client_id}, {}
        if (method, action) == ("GET", "faults"):
            return 200, state.faults_view(named), {}
        if (method, action) == ("POST", "faults"):
            return 200, state.set_faults(payload), {}
        if (method, action) == ("POST", "tokens/revoke"):
            return 200, {"revoked": state.revoke_tokens(payload.get("client_id"), named)}, {}
        if (method, action) == ("POST", "clients"):
            org = state.org(named)
            first = state.clients[state.config.client_id].permissions if org.name == DEFAULT_ORG else ALL_PERMISSIONS
            permissions = set(payload.get("permissions") or first)
            permissions -= set(payload.get("deny") or [])
            state.add_client(payload["client_id"], payload["client_secret"], permissions, org=org.name)
            return 201, {"client_id": payload["client_id"], "org": org.name,
                         "permissions": sorted(permissions)}, {}
        if (method, action) == ("POST", "conversations"):
            ids = state.create_conversations(
                int(payload.get("count", 1)), payload.get("kind", "webmessaging"),
                age_seconds=float(payload.get("age_minutes", 10)) * 60,
                idle_seconds=None if payload.get("idle_minutes") is None else float(payload["idle_minutes"]) * 60,
                queue_id=payload.get("queue_id"), org=named, ids=payload.get("ids"))
            return 201, {"ids": ids}, {}
        if (method, action) == ("GET", "conversations"):
            org = state.org(named)
            wanted_kind = query.get("kind", [None])[0]
            wanted_open = query.get("open", [None])[0]
            described = [state.describe(c, org) for c in org.conversations.values()
                         if wanted_kind in (None, c.kind)]
            if wanted_open is not None:
                described = [d for d in described if d["open"] == (wanted_open == "true")]
            return 200, {"conversations": described, "kinds": list(KINDS)}, {}
        if method == "POST" and action.startswith("conversations/") and action.endswith("/fix"):
            conversation = state.org(named).conversations.get(action.split("/")[1])
            if conversation is None:
                return 404, {"error": "no such conversation"}, {}
            conversation.ignores_conversation_patch = False  # the cause is fixed: a close now takes (a stuck one)
            return 200, {"id": conversation.id, "fixed": True}, {}
        if method == "GET" and action.startswith("conversations/"):
            org = state.org(named)
            conversation = org.conversations.get(action.split("/", 1)[1])
            if conversation is None:
                return 404, {"error": "no such conversation"}, {}
            return 200, state.describe(conversation, org), {}
        return 404, {"error": f"no admin route {method} /__emulator__/{action}"}, {}


class EmulatorServer:
    """An emulator bound to a host and port (0 picks a free one), served from a background thread."""

    def __init__(self, host: str = "127.0.0.1", port: int = 0, config: EmulatorConfig | None = None,
                 clock: Callable[[], float] = time.time) -> None:
        self.state = EmulatorState(config, clock)
        self.httpd = EmulatorHTTPServer((host, port), self.state)
        self._thread: threading.Thread | None = None

    @property
    def base_url(self) -> str:
        host, port = self.httpd.server_address[:2]
        return f"http://{host!s}:{port}"

    def serve_forever(self) -> None:
        self.httpd.serve_forever(poll_interval=0.2)

    def start(self) -> EmulatorServer:
        self._thread = threading.Thread(target=self.serve_forever, name="genesys-emulator", daemon=True)
        self._thread.start()
        return self

    def stop(self) -> None:
        self.httpd.shutdown()
        self.httpd.server_close()
        if self._thread is not None:
            self._thread.join(timeout=5)


def start_in_thread(host: str = "127.0.0.1", port: int = 0, config: EmulatorConfig | None = None,
                    clock: Callable[[], float] = time.time) -> EmulatorServer:
    """``clock``: epoch seconds now, for every time the emulator reads (tokens, rate windows, faults, analytics lag,
    consistency delay); tests pass one they advance instead of sleeping."""
    return EmulatorServer(host, port, config, clock).start()
