"""Access tokens: one per OAuth client for the whole fleet.

``TokenProvider`` is the interface the Genesys client uses: ``get()`` a valid token, ``invalidate(token)`` after a
401 (only that token is dropped, so a fresher one another worker already fetched survives).
``InProcessTokenProvider`` caches in memory (one process). ``RedisTokenProvider`` shares one token through Redis
with a single-flight refresh (lock, then re-check), an expiry margin, and the token encrypted with a key derived
from the client secret, so that reading Redis alone does not yield a usable token.
"""

from __future__ import annotations

import base64
import hashlib
import threading
import time
import uuid
from collections.abc import Callable
from dataclasses import dataclass
from typing import Protocol

import redis
from cryptography.fernet import Fernet, InvalidToken
from cryptography.hazmat.primitives import hashes
from cryptography.hazmat.primitives.kdf.hkdf import HKDF

from genesys_closer.config.redis_keys import KEYS, RedisKeys
from genesys_closer.shared.locks import OwnedLock
from genesys_closer.shared.redis_connection import register_lua, text
from genesys_closer.worker.genesys.errors import TransportError


@dataclass(frozen=True)
class TokenGrant:
    """What ``POST /oauth/token`` returned. ``repr`` never shows the token."""

    access_token: str
    expires_in_seconds: float

    def __repr__(self) -> str:
        return f"TokenGrant(access_token=<redacted>, expires_in_seconds={self.expires_in_seconds})"


TokenFetcher = Callable[[], TokenGrant]


class TokenProvider(Protocol):
    def get(self) -> str:
        """A token believed valid, fetching one if needed."""

    def invalidate(self, token: str) -> None:
        """Forget ``token`` (it was refused with 401)."""


def lifetime_seconds(grant: TokenGrant, margin_seconds: float) -> float:
    """How long to keep a token: its lifetime minus the margin, but never less than half its lifetime."""
    return max(grant.expires_in_seconds - margin_seconds, grant.expires_in_seconds / 2)


def fingerprint(token: str) -> str:
    """A short digest that identifies a token without revealing it (for invalidation and logs)."""
    return hashlib.sha256(token.encode()).hexdigest()[:16]


class InProcessTokenProvider:
    """A per-process cache: fine for one worker, the CLI or tests."""

    def __init__(self, fetch: TokenFetcher, margin_seconds: float = 300.0,
                 clock: Callable[[], float] = time.monotonic) -> None:
        self._fetch = fetch
        self._margin = margin_seconds
        self._clock = clock
        self._lock = threading.Lock()
        self._token: str | None = None
        self._valid_until = 0.0
        self.refreshes = 0

    def get(self) -> str:
        with self._lock:
            if self._token is None or self._clock() >= self._valid_until:
                grant = self._fetch()
                self.refreshes += 1
                self._token = grant.access_token
                self._valid_until = self._clock() + lifetime_seconds(grant, self._margin)
            return self._token

    def invalidate(self, token: str) -> None:
        with self._lock:
            if self._token == token:
                self._token = None


def encryption_key(client_id: str, client_secret: str) -> bytes:
    """A Fernet key derived (HKDF-SHA256) from the OAuth client secret."""
    derived = HKDF(algorithm=hashes.SHA256(), length=32, salt=b"genesys-closer token v1",
                   info=client_id.encode()).derive(client_secret.encode())
    return base64.urlsafe_b64encode(derived)


class RedisTokenProvider:
    """One token for every worker that shares Redis and the OAuth client."""

    def __init__(self, client: redis.Redis, fetch: TokenFetcher, client_id: str, client_secret: str, *,
                 margin_seconds: float = 300.0, lock_seconds: float = 15.0, wait_seconds: float = 20.0,
                 keys: RedisKeys = KEYS, sleep: Callable[[float], None] = time.sleep,
                 on_refresh: Callable[[], None] | None = None) -> None:
        self.redis = client
        self._fetch = fetch
        self._fernet = Fernet(encryption_key(client_id, client_secret))
        self.key = keys.token(client_id)
        self.lock_key = keys.token_lock(client_id)
        self.refresh_counter_key = keys.token_refreshes(client_id)
        self._margin = margin_seconds
        self._lock_seconds = lock_seconds
        self._wait_seconds = wait_seconds
        self._sleep = sleep
        self._on_refresh = on_refresh
        self._invalidate = register_lua(client, "invalidate_token.lua")

    def _read(self) -> str | None:
        sealed = self.redis.hget(self.key, "ct")
        if sealed is None:
            return None
        try:
            return self._fernet.decrypt(text(sealed).encode()).decode()
        except InvalidToken:
            return None  # written with another secret: treat as absent

    def get(self) -> str:
        deadline = time.monotonic() + self._wait_seconds
        while True:
            token = self._read()
            if token is not None:
                return token
            lock = OwnedLock(self.redis, self.lock_key, self._lock_seconds)
            if lock.acquire(uuid.uuid4().hex):
                with lock:
                    token = self._read()  # re-check: another worker may have just stored one
                    if token is not None:
                        return token
                    return self._refresh()
            if time.monotonic() >= deadline:
                raise TransportError("timed out waiting for another worker to fetch the access token")
            self._sleep(0.05)

    def _refresh(self) -> str:
        grant = self._fetch()
        ttl_ms = max(1000, round(lifetime_seconds(grant, self._margin) * 1000))
        pipe = self.redis.pipeline(transaction=True)
        pipe.delete(self.key)
        pipe.hset(self.key, mapping={
            "ct": self._fernet.encrypt(grant.access_token.encode()).decode(),
            "fp": fingerprint(grant.access_token),
        })
        pipe.pexpire(self.key, ttl_ms)
        pipe.incr(self.refresh_counter_key)
        pipe.execute()
        if self._on_refresh is not None:
            self._on_refresh()
        return grant.access_token

    def invalidate(self, token: str) -> None:
        self._invalidate(keys=[self.key], args=[fingerprint(token)])

    def refresh_count(self) -> int:
        return int(self.redis.get(self.refresh_counter_key) or 0)
