"""Who is calling: an ``Authorization`` header (the API's bearer token or Basic credentials), or else a console
session cookie. Either way the caller is the credential's digest, and the same per-credential rate limit applies.

A request that changes state with a session cookie must carry the session's CSRF token in ``X-CSRF-Token`` (the
console's scripts read it from the page) and, when the browser says where it comes from, an ``Origin`` of this very
host: a page elsewhere can make the browser send the cookie (another port of the same host is the same *site*, so
``SameSite=Strict`` alone does not stop it) but cannot read the token. A bearer token is never sent by a browser on
its own, so header-authenticated requests need no token.
"""

from __future__ import annotations

import asyncio
import dataclasses
import hashlib
import math
from collections import OrderedDict
from collections.abc import Awaitable, Callable
from typing import Any, Protocol
from urllib.parse import urlsplit

import redis
from fastapi import Request
from starlette.concurrency import run_in_threadpool

from genesys_closer.producer.console.sessions import (
    CSRF_HEADER,
    SESSION_COOKIE,
    Session,
    SessionStore,
    same_token,
)
from genesys_closer.producer.intake_http import IntakeError
from genesys_closer.shared.rate_limit import RedisRateLimiter

SAFE_METHODS = frozenset({"GET", "HEAD", "OPTIONS"})


class Caller(Protocol):
    """Who is asking (``producer.intake.Caller``): a credential's digest and the orgs it is granted."""

    credential: str
    orgs: frozenset[str]

    def org(self, requested: object, not_found: str) -> str: ...


class Guard(Protocol):
    def identify(self, request: Request) -> Any: ...

    def identify_header(self, header: str) -> Any: ...

    def grants_of(self, credential: str) -> frozenset[str] | None: ...

    def admit(self, credential: str) -> Awaitable[None]: ...


def same_origin(request: Request) -> bool:
    """No ``Origin`` header (a same-origin GET, an old browser), or one naming this host."""
    origin = request.headers.get("origin")
    if origin is None:
        return True
    return urlsplit(origin).netloc.lower() == (request.headers.get("host") or "").lower()


class LoginLimiter:
    """Login attempts per client address, at the API's per-credential rate (in Redis: across intake processes). The
    limiters of at most ``MAX_TRACKED`` addresses are kept in memory, the least recent dropped (their state is in
    Redis), so a crowd of addresses cannot grow the process."""

    MAX_TRACKED = 1000

    def __init__(self, client: redis.Redis, limit_per_minute: int) -> None:
        self.redis = client
        self.limit = limit_per_minute
        self._limiters: OrderedDict[str, RedisRateLimiter] = OrderedDict()

    async def admit(self, request: Request) -> None:
        address = request.client.host if request.client else "unknown"
        name = "console-login-" + hashlib.sha256(address.encode()).hexdigest()[:12]
        limiter = self._limiters.pop(name, None) or RedisRateLimiter(self.redis, name, self.limit, headroom=1.0)
        self._limiters[name] = limiter
        while len(self._limiters) > self.MAX_TRACKED:
            self._limiters.popitem(last=False)
        grant = await run_in_threadpool(limiter.reserve, 1.0)
        if not grant.granted:
            retry = max(1, math.ceil(grant.wait_seconds))
            raise IntakeError(429, "rate_limited", f"too many login attempts; retry in {retry} s",
                              headers={"Retry-After": str(retry)})
        if grant.wait_seconds > 0:
            await asyncio.sleep(grant.wait_seconds)


class ConsoleAuth:
    def __init__(self, guard: Guard, sessions: SessionStore, logins: LoginLimiter,
                 make_caller: Callable[[str, frozenset[str]], Caller]) -> None:
        self.guard = guard
        self.sessions = sessions
        self.logins = logins
        self.make_caller = make_caller

    async def session(self, request: Request) -> Session | None:
        """The request's live session, with the orgs its credential is granted *now*; None when there is none, or
        when its credential is no longer configured (a rotated token): that session is deleted, as at logout."""
        session = await run_in_threadpool(self.sessions.find, request.cookies.get(SESSION_COOKIE))
        if session is None:
            return None
        orgs = self.guard.grants_of(session.credential)
        if orgs is None:
            await run_in_threadpool(self.sessions.revoke, session)
            return None
        return session if orgs == session.orgs else dataclasses.replace(session, orgs=orgs)

    async def caller(self, request: Request) -> Caller:
        """Who is asking (IntakeError 401/403 otherwise), after its rate-limit slot."""
        if "authorization" in request.headers:
            who: Caller = self.guard.identify(request)
        else:
            session = await self.session(request)
            if session is None:
                raise IntakeError(401, "unauthorized", "authentication required",
                                  headers={"WWW-Authenticate": 'Bearer realm="genesys-closer"'})
            if request.method not in SAFE_METHODS and (
                    not same_token(request.headers.get(CSRF_HEADER), session.csrf) or not same_origin(request)):
                raise IntakeError(403, "csrf", "this request lacks the console's CSRF token; reload the page")
            request.state.console_session = session
            who = self.make_caller(session.credential, session.orgs)
        await self.guard.admit(who.credential)
        return who


async def console_caller(request: Request) -> Caller:
    """The route dependency of the API and the console: ``ConsoleAuth.caller`` of this app."""
    auth: ConsoleAuth = request.app.state.console_auth
    return await auth.caller(request)
