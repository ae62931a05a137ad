"""Who is calling: an ``Authorization`` header (the API's bearer token or Basic credentials), or else a console
session cookie. Either way the caller is the credential's digest, and the same per-credential rate limit applies.

A request that changes state with a session cookie must carry the session's CSRF token in ``X-CSRF-Token`` (the
console's scripts read it from the page) and, when the browser says where it comes from, an ``Origin`` of this very
host: a page elsewhere can make the browser send the cookie (another port of the same host is the same *site*, so
``SameSite=Strict`` alone does not stop it) but cannot read the token. A bearer token is never sent by a browser on
its own, so header-authenticated requests need no token.
"""

from __future__ import annotations

from collections.abc import Awaitable
from typing import Protocol
from urllib.parse import urlsplit

from fastapi import Request
from starlette.concurrency import run_in_threadpool

from genesys_closer.producer.console.sessions import CSRF_HEADER, SESSION_COOKIE, SessionStore, same_token
from genesys_closer.producer.intake_http import IntakeError

SAFE_METHODS = frozenset({"GET", "HEAD", "OPTIONS"})


class Guard(Protocol):
    def identify(self, request: Request) -> str: ...

    def identify_header(self, header: str) -> str: ...

    def admit(self, credential: str) -> Awaitable[None]: ...


def same_origin(request: Request) -> bool:
    """No ``Origin`` header (a same-origin GET, an old browser), or one naming this host."""
    origin = request.headers.get("origin")
    if origin is None:
        return True
    return urlsplit(origin).netloc.lower() == (request.headers.get("host") or "").lower()


class ConsoleAuth:
    def __init__(self, guard: Guard, sessions: SessionStore) -> None:
        self.guard = guard
        self.sessions = sessions

    async def caller(self, request: Request) -> str:
        """The credential digest of the request (IntakeError 401/403 otherwise), after its rate-limit slot."""
        if "authorization" in request.headers:
            credential = self.guard.identify(request)
        else:
            session = await run_in_threadpool(self.sessions.find, request.cookies.get(SESSION_COOKIE))
            if session is None:
                raise IntakeError(401, "unauthorized", "authentication required",
                                  headers={"WWW-Authenticate": 'Bearer realm="genesys-closer"'})
            if request.method not in SAFE_METHODS and (
                    not same_token(request.headers.get(CSRF_HEADER), session.csrf) or not same_origin(request)):
                raise IntakeError(403, "csrf", "this request lacks the console's CSRF token; reload the page")
            request.state.console_session = session
            credential = session.credential
        await self.guard.admit(credential)
        return credential
