"""HTTP to Genesys Cloud. The only module that imports ``requests``.

``Transport`` sends one request: it reserves a slot from the fleet-wide rate limiter right before sending, maps
``requests`` failures to ``TransportError``, reads the rate-limit headers and starts the fleet pause on a 429.
``OAuthClient`` fetches client-credentials tokens. ``GenesysClient`` makes the API calls the closer needs, with
the token from a ``TokenProvider`` (on 401: drop that token, refresh once, retry once) and turns non-2xx replies
into the errors of ``worker.genesys.errors``. Nothing here logs or keeps a token or the secret in an error.
"""

from __future__ import annotations

import base64
import json
import logging
import threading
import time
from collections import Counter
from collections.abc import Callable
from dataclasses import dataclass, field
from typing import Any
from urllib.parse import quote, urlsplit

import requests
from requests.adapters import HTTPAdapter

from genesys_closer.shared.ids import parse_conversation_id, parse_uuid
from genesys_closer.shared.lanes import BULK, BULK_HORIZON_SECONDS, current_lane, hold_slot, take_held_slot
from genesys_closer.shared.rate_limit import RateLimiter, RateLimitHeaders
from genesys_closer.worker.genesys.errors import (
    AuthenticationFailed,
    GenesysError,
    RateLimited,
    ServerError,
    TransportError,
)
from genesys_closer.worker.genesys.http_policy import error_for_status, first_header, parse_retry_after
from genesys_closer.worker.genesys.reachability import AlwaysReachable, Reachability
from genesys_closer.worker.genesys.tokens import TokenGrant, TokenProvider

log = logging.getLogger(__name__)
MAX_RESPONSE_BYTES = 10 * 1024 * 1024
CORRELATION_HEADERS = ("ININ-Correlation-Id", "Genesys-Correlation-Id")
USER_AGENT = "genesys-closer/0.1"


@dataclass
class Reply:
    status: int
    headers: dict[str, str]
    body: Any
    correlation_id: str | None


@dataclass
class CallTally:
    """What one close cost: API requests, replies by status, correlation ids."""

    api_calls: int = 0
    statuses: Counter[int] = field(default_factory=Counter)
    correlation_ids: list[str] = field(default_factory=list)

    def add(self, reply: Reply) -> None:
        self.api_calls += 1
        self.statuses[reply.status] += 1
        if reply.correlation_id and len(self.correlation_ids) < 20:
            self.correlation_ids.append(reply.correlation_id)

    def add_failure(self) -> None:
        self.api_calls += 1
        self.statuses[0] += 1


@dataclass
class TransportHooks:
    """Observers for metrics; all optional."""

    on_reply: Callable[[str, int], None] | None = None
    on_transport_error: Callable[[str], None] | None = None
    on_limiter_wait: Callable[[float], None] | None = None
    on_pause: Callable[[float, bool], None] | None = None


class EnvironmentOnceSession(requests.Session):
    """A ``requests.Session`` that reads the environment's proxy and CA settings once per scheme and host.

    requests looks them up again for every request (``merge_environment_settings``: the ``*_proxy`` variables,
    ``no_proxy``, ``REQUESTS_CA_BUNDLE``, ``CURL_CA_BUNDLE``), which scans the whole environment each time (about 2 %
    of a worker's CPU in a profile of 1,000 batch closes). What it finds depends only on the URL's scheme and host,
    and the environment a worker started with: the answer for each is kept (a worker talks to two hosts, Genesys'
    API and login). A request that passes its own proxies, or a session with ``trust_env`` off, is left to requests.
    """

    def __init__(self) -> None:
        super().__init__()
        self._environment: dict[tuple[str, str, object, object, object], dict[str, Any]] = {}

    def merge_environment_settings(self, url: Any, proxies: Any, stream: Any, verify: Any, cert: Any) -> Any:
        if proxies or not self.trust_env:
            return super().merge_environment_settings(url, proxies, stream, verify, cert)
        parts = urlsplit(str(url))
        key = (parts.scheme, parts.netloc, stream, verify, cert)
        settings = self._environment.get(key)
        if settings is None:
            settings = dict(super().merge_environment_settings(url, proxies, stream, verify, cert))
            self._environment[key] = settings
        return {**settings, "proxies": dict(settings["proxies"])}


def new_session(pool_size: int = 16) -> requests.Session:
    session = EnvironmentOnceSession()
    adapter = HTTPAdapter(pool_connections=2, pool_maxsize=pool_size, max_retries=0)
    session.mount("http://", adapter)
    session.mount("https://", adapter)
    session.headers["User-Agent"] = USER_AGENT
    return session


class Transport:
    """One pooled session, the shared rate limiter and error mapping."""

    def __init__(
        self,
        limiter: RateLimiter,
        *,
        session: requests.Session | None = None,
        connect_timeout_seconds: float = 3.05,
        read_timeout_seconds: float = 15.0,
        default_pause_seconds: float = 30.0,
        max_limiter_wait_seconds: float = 5.0,
        sleep: Callable[[float], None] = time.sleep,
        hooks: TransportHooks | None = None,
        reachability: Reachability | None = None,
    ) -> None:
        self.limiter = limiter
        self.reachability = reachability or AlwaysReachable()
        self._local = threading.local()
        self._shared_session = session
        self.timeouts = (connect_timeout_seconds, read_timeout_seconds)
        self.default_pause_seconds = default_pause_seconds
        self.max_limiter_wait_seconds = max_limiter_wait_seconds
        self.sleep = sleep
        self.hooks = hooks or TransportHooks()

    @property
    def session(self) -> requests.Session:
        """The injected session, or one pooled session per thread (requests sessions are not thread-safe)."""
        if self._shared_session is not None:
            return self._shared_session
        session: requests.Session | None = getattr(self._local, "session", None)
        if session is None:
            session = self._local.session = new_session()
        return session

    def hold_first_slot(self, ticket: str) -> float | None:
        """For bulk work about to make its first call, inside its lane block: reserve a slot at most
        ``BULK_HORIZON_SECONDS`` away and hold it for the block's next request (None). When none is that near,
        reserve nothing and return the seconds until ``ticket``'s turn in the limiter's line: the work hands its
        task back for that long rather than sleep on a slot while holding a pool process."""
        grant = self.limiter.reserve_in_line(ticket, BULK_HORIZON_SECONDS)
        if not grant.granted:
            return grant.wait_seconds
        hold_slot(time.monotonic() + grant.wait_seconds)
        return None

    def wait_for_slot(self, label: str) -> None:
        """Reserve a slot and sleep until it (or use the slot ``hold_first_slot`` holds). Bulk work reserves at most
        ``BULK_HORIZON_SECONDS`` ahead and otherwise sleeps until a slot is that near (see ``lanes``); any wait
        beyond the inline maximum is raised."""
        held = take_held_slot()
        if held is not None:
            wait = held - time.monotonic()
            if wait > 0:
                self.sleep(wait)
            if self.hooks.on_limiter_wait and wait > 0:
                self.hooks.on_limiter_wait(wait)
            return
        started = time.monotonic()
        while True:
            waited = time.monotonic() - started
            horizon = self.max_limiter_wait_seconds - waited
            if current_lane() == BULK:
                horizon = min(horizon, BULK_HORIZON_SECONDS)
            grant = self.limiter.reserve(max(horizon, 0.0))
            if grant.granted:
                break
            if waited + grant.wait_seconds > self.max_limiter_wait_seconds:
                raise RateLimited(
                    f"fleet rate limit: next slot in {grant.wait_seconds:.1f} s ({label} deferred)",
                    retry_after_seconds=grant.wait_seconds,
                )
            self.sleep(max(grant.wait_seconds - BULK_HORIZON_SECONDS, 0.005))
        total = time.monotonic() - started + grant.wait_seconds
        if grant.wait_seconds > 0:
            self.sleep(grant.wait_seconds)
        if total > 0 and self.hooks.on_limiter_wait:
            self.hooks.on_limiter_wait(total)

    def send(self, method: str, url: str, route: str, *, headers: dict[str, str], json_body: Any = None,
             form: dict[str, str] | None = None, tally: CallTally | None = None) -> Reply:
        """Send one request after reserving a rate-limit slot. ``route`` is the path template, for logs/metrics."""
        label = f"{method} {route}"
        self.reachability.before_send(label)  # the org's host not answering: one probe at a time, the rest defer
        self.wait_for_slot(label)
        try:
            response = self.session.request(
                method, url, headers=headers, json=json_body, data=form, timeout=self.timeouts,
                allow_redirects=False, stream=True,
            )
            try:
                content = _read_limited(response)
            finally:
                response.close()
        except requests.Timeout:
            self._failed(label, tally)
            self.reachability.timed_out()
            raise TransportError(f"{label}: timed out") from None
        except ResponseTooLarge as exc:
            self._failed(label, tally)
            raise TransportError(f"{label}: {exc}") from None
        except requests.RequestException as exc:
            self._failed(label, tally)
            raise TransportError(f"{label}: connection failed ({type(exc).__name__})") from None
        reply = Reply(
            status=response.status_code,
            headers={k.lower(): v for k, v in response.headers.items()},
            body=_decode(content),
            correlation_id=first_header(response.headers, CORRELATION_HEADERS),
        )
        self.reachability.answered()
        if tally is not None:
            tally.add(reply)
        if self.hooks.on_reply:
            self.hooks.on_reply(label, reply.status)
        limits = RateLimitHeaders.parse(reply.headers)
        if limits is not None:
            self.limiter.observe(limits)
        if reply.status == 429:
            retry_after = parse_retry_after(reply.headers.get("retry-after"), time.time())
            pause = retry_after if retry_after is not None else self.default_pause_seconds
            started = self.limiter.pause(pause)
            if self.hooks.on_pause:
                self.hooks.on_pause(pause, started)
        return reply

    def _failed(self, label: str, tally: CallTally | None) -> None:
        if tally is not None:
            tally.add_failure()
        if self.hooks.on_transport_error:
            self.hooks.on_transport_error(label)


class ResponseTooLarge(requests.RequestException):
    """The body passed MAX_RESPONSE_BYTES: the rest is not read."""


def _read_limited(response: requests.Response) -> bytes:
    chunks, size = [], 0
    for chunk in response.iter_content(chunk_size=65536):
        size += len(chunk)
        if size > MAX_RESPONSE_BYTES:
            raise ResponseTooLarge(f"response larger than {MAX_RESPONSE_BYTES} bytes (not read further)")
        chunks.append(chunk)
    return b"".join(chunks)


def _decode(content: bytes) -> Any:
    if not content:
        return None
    try:
        return json.loads(content)
    except ValueError:
        return {"_unparsed": content[:200].decode("utf-8", "replace")}


def error_from_reply(reply: Reply, label: str) -> GenesysError:
    """The typed error for a non-2xx reply, keeping status, error code, correlation id and Retry-After."""
    body = reply.body if isinstance(reply.body, dict) else {}
    code = body.get("code") or body.get("error")
    message = body.get("message") or body.get("error_description") or f"{label} failed"
    retry_after = parse_retry_after(reply.headers.get("retry-after"), time.time())
    safe_body = {k: body[k] for k in ("message", "code", "status", "messageParams", "contextId", "error")
                 if k in body}
    cls = error_for_status(reply.status)
    return cls(str(message)[:500], reply.status, code, reply.correlation_id or body.get("contextId"),
               retry_after, safe_body)


class OAuthClient:
    """``POST https://login.<env>/oauth/token`` with the client-credentials grant (Basic auth header)."""

    def __init__(self, transport: Transport, login_url: str, client_id: str, client_secret: str) -> None:
        self.transport = transport
        self.url = f"{login_url}/oauth/token"
        basic = base64.b64encode(f"{client_id}:{client_secret}".encode()).decode()
        self._headers = {"Authorization": f"Basic {basic}",
                         "Content-Type": "application/x-www-form-urlencoded"}

    def fetch_token(self) -> TokenGrant:
        reply = self.transport.send("POST", self.url, "/oauth/token", headers=self._headers,
                                    form={"grant_type": "client_credentials"})
        body = reply.body if isinstance(reply.body, dict) else {}
        if reply.status == 200 and isinstance(body.get("access_token"), str):
            return TokenGrant(body["access_token"], float(body.get("expires_in") or 86_400))
        if reply.status == 429 or reply.status >= 500:
            raise error_from_reply(reply, "POST /oauth/token")
        if body.get("error") == "invalid_client":
            raise AuthenticationFailed(
                f"the OAuth client was refused ({body.get('description') or 'invalid_client'}): check "
                "GENESYS_CLIENT_ID, GENESYS_CLIENT_SECRET and that GENESYS_ENVIRONMENT is the org's region",
                reply.status, "invalid_client", reply.correlation_id)
        if reply.status == 200:
            raise ServerError("token response without access_token", reply.status, None, reply.correlation_id)
        raise error_from_reply(reply, "POST /oauth/token")


class GenesysClient:
    """The Platform API calls genesys-closer makes. IDs are validated before any URL is built."""

    def __init__(self, transport: Transport, api_url: str, tokens: TokenProvider) -> None:
        self.transport = transport
        self.api_url = api_url
        self.tokens = tokens

    def _call(self, method: str, route: str, path: str, *, json_body: Any = None,
              tally: CallTally | None = None) -> Any:
        label = f"{method} {route}"
        token = self.tokens.get()
        reply = self._send(method, route, path, token, json_body, tally)
        if reply.status == 401:
            # Only the refused token is dropped; one refresh, one retry, never a loop.
            self.tokens.invalidate(token)
            reply = self._send(method, route, path, self.tokens.get(), json_body, tally)
            if reply.status == 401:
                error = error_from_reply(reply, label)
                raise AuthenticationFailed(
                    "refused with 401 even with a fresh token: the OAuth client may be disabled or its "
                    "token revoked continuously", 401, error.code, error.correlation_id)
        if reply.status >= 400:
            raise error_from_reply(reply, label)
        if reply.status == 200 and isinstance(reply.body, dict) and "_unparsed" in reply.body:
            raise ServerError(f"{label}: response is not JSON", reply.status, None, reply.correlation_id)
        return reply.body

    def probe(self, method: str, route: str, path: str, json_body: Any = None) -> Reply:
        """One request whose answer is returned as it is (any status, headers included): for readiness checks.
        A 401 still drops the refused token and retries once with a fresh one."""
        token = self.tokens.get()
        reply = self._send(method, route, path, token, json_body, None)
        if reply.status == 401:
            self.tokens.invalidate(token)
            reply = self._send(method, route, path, self.tokens.get(), json_body, None)
        return reply

    def _send(self, method: str, route: str, path: str, token: str, json_body: Any,
              tally: CallTally | None) -> Reply:
        headers = {"Authorization": f"Bearer {token}", "Accept": "application/json"}
        if json_body is not None:
            headers["Content-Type"] = "application/json"
        return self.transport.send(method, f"{self.api_url}{path}", route, headers=headers,
                                   json_body=json_body, tally=tally)

    @staticmethod
    def _segment(conversation_id: str) -> str:
        return quote(parse_conversation_id(conversation_id), safe="")

    def get_message_conversation(self, conversation_id: str, tally: CallTally | None = None) -> dict[str, Any]:
        """``GET /api/v2/conversations/messages/{conversationId}`` -> MessageConversation."""
        body = self._call("GET", "/api/v2/conversations/messages/{conversationId}",
                          f"/api/v2/conversations/messages/{self._segment(conversation_id)}", tally=tally)
        return _require_object(body, "MessageConversation")

    def disconnect_message_conversation(self, conversation_id: str,
                                        tally: CallTally | None = None) -> dict[str, Any] | None:
        """``PATCH /api/v2/conversations/messages/{conversationId}`` with ``{"state": "disconnected"}``; returns the
        ``Conversation`` Genesys answers with (None for an empty or unreadable body)."""
        body = self._call("PATCH", "/api/v2/conversations/messages/{conversationId}",
                          f"/api/v2/conversations/messages/{self._segment(conversation_id)}",
                          json_body={"state": "disconnected"}, tally=tally)
        return body if isinstance(body, dict) and "_unparsed" not in body else None

    def patch_participant(self, conversation_id: str, participant_id: str, body: dict[str, Any],
                          tally: CallTally | None = None) -> None:
        """``PATCH .../messages/{conversationId}/participants/{participantId}`` (MediaParticipantRequest)."""
        segment = quote(parse_uuid(participant_id, "participant id"), safe="")
        self._call("PATCH", "/api/v2/conversations/messages/{conversationId}/participants/{participantId}",
                   f"/api/v2/conversations/messages/{self._segment(conversation_id)}/participants/{segment}",
                   json_body=body, tally=tally)

    def teardown_conversation(self, conversation_id: str, tally: CallTally | None = None) -> None:
        """``POST /api/v2/conversations/{conversationId}/disconnect``: the full teardown (opt-in only)."""
        self._call("POST", "/api/v2/conversations/{conversationId}/disconnect",
                   f"/api/v2/conversations/{self._segment(conversation_id)}/disconnect", tally=tally)

    def get_analytics_conversations(self, conversation_ids: list[str],
                                    tally: CallTally | None = None) -> list[dict[str, Any]]:
        """``GET /api/v2/analytics/conversations/details?id=ID,ID,...`` ("Gets multiple conversations by id") ->
        the rows of ``AnalyticsConversationWithoutAttributesMultiGetResponse``; IDs analytics does not know (yet)
        are left out of the answer."""
        ids = ",".join(quote(parse_conversation_id(cid), safe="") for cid in conversation_ids)
        body = self._call("GET", "/api/v2/analytics/conversations/details",
                          f"/api/v2/analytics/conversations/details?id={ids}", tally=tally)
        rows = _require_object(body, "AnalyticsConversationWithoutAttributesMultiGetResponse").get("conversations")
        return [row for row in rows if isinstance(row, dict)] if isinstance(rows, list) else []

    def query_conversation_details(self, query: dict[str, Any]) -> dict[str, Any]:
        """``POST /api/v2/analytics/conversations/details/query`` -> AnalyticsConversationQueryResponse."""
        body = self._call("POST", "/api/v2/analytics/conversations/details/query",
                          "/api/v2/analytics/conversations/details/query", json_body=query)
        return _require_object(body, "AnalyticsConversationQueryResponse")


def _require_object(body: Any, model: str) -> dict[str, Any]:
    if not isinstance(body, dict):
        raise ServerError(f"expected a {model} object, got {type(body).__name__}")
    return body
