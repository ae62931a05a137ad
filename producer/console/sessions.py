"""Console logins: a random session id in an ``HttpOnly``, ``SameSite=Strict`` cookie (``Secure`` unless the page was
asked for over plain HTTP on a loopback address), and its record in Redis under a digest of the id (a Redis dump
holds no usable cookie). The record names the credential digest the operator logged in with (the API's rate limit
applies to it) and the session's CSRF token. Logout deletes the record: the cookie is worthless at once, in every
intake process. Nothing here holds a credential itself.
"""

from __future__ import annotations

import hashlib
import hmac
import json
import secrets
from dataclasses import dataclass

import redis
from starlette.requests import HTTPConnection
from starlette.responses import Response

from genesys_closer.config.redis_keys import KEYS, RedisKeys

SESSION_COOKIE = "gc_console"
LOGIN_COOKIE = "gc_console_login"  # the login form's own CSRF token (double submit), before any session exists
CSRF_HEADER = "x-csrf-token"
CSRF_FIELD = "csrf"
LOOPBACK_HOSTS = ("localhost", "127.0.0.1", "[::1]")


@dataclass(frozen=True)
class Session:
    digest: str  # of the cookie value: the Redis key's last part
    credential: str  # the digest of the intake credential used at login (the rate limit's key)
    csrf: str
    orgs: frozenset[str]  # the orgs that credential is granted (at login)


def _digest(session_id: str) -> str:
    return hashlib.sha256(session_id.encode()).hexdigest()


def new_token() -> str:
    return secrets.token_urlsafe(32)


def same_token(given: str | None, expected: str) -> bool:
    return given is not None and hmac.compare_digest(given.encode(), expected.encode())


def cookie_is_secure(connection: HTTPConnection) -> bool:
    """Secure everywhere but plain HTTP to a loopback host (a laptop's demo): behind TLS the browser gets it
    Secure, and a deployment that forgets TLS still never sends the cookie over plain HTTP to another host."""
    if connection.url.scheme == "https":
        return True
    host = (connection.headers.get("host") or "").lower()
    name = host.rsplit(":", 1)[0] if not host.endswith("]") else host
    return name not in LOOPBACK_HOSTS


def set_cookie(response: Response, connection: HTTPConnection, name: str, value: str, max_age: int) -> None:
    response.set_cookie(name, value, max_age=max_age, path="/", httponly=True, samesite="strict",
                        secure=cookie_is_secure(connection))


class SessionStore:
    def __init__(self, client: redis.Redis, lifetime_seconds: int, *, keys: RedisKeys = KEYS) -> None:
        self.redis = client
        self.lifetime = lifetime_seconds
        self.keys = keys

    def create(self, credential: str, orgs: frozenset[str]) -> tuple[str, Session]:
        """A new session for ``credential`` (a digest) and its orgs; returns the cookie value and the session."""
        session_id = new_token()
        session = Session(_digest(session_id), credential, new_token(), orgs)
        self.redis.set(self.keys.console_session(session.digest),
                       json.dumps({"credential": credential, "csrf": session.csrf, "orgs": sorted(orgs)}),
                       ex=self.lifetime)
        return session_id, session

    def find(self, session_id: str | None) -> Session | None:
        """The live session of a cookie value, or None (unknown, expired or logged out)."""
        if not session_id or len(session_id) > 100:
            return None
        digest = _digest(session_id)
        raw = self.redis.get(self.keys.console_session(digest))
        if raw is None:
            return None
        record = json.loads(raw)
        return Session(digest, str(record["credential"]), str(record["csrf"]), frozenset(record.get("orgs", ())))

    def alive(self, session: Session) -> bool:
        return bool(self.redis.exists(self.keys.console_session(session.digest)))

    def revoke(self, session: Session) -> None:
        self.redis.delete(self.keys.console_session(session.digest))
