"""Redis locks with owner tokens (redis-py's ``Lock``): only the owner can extend or release a lock.

Every lock in genesys-closer goes through ``OwnedLock``: the fleet token refresh, the per-conversation in-flight
lock, the single sweep and the stalled-batch redrive. A lock always has a time-to-live, so a process that dies
holding one delays the others by at most that long; a caller that can prove the holder gone takes the lock over
(``take_over``, a compare-and-set on the holder's token) instead of waiting (the in-flight lock does:
``worker/running/inflight_lock.py``).
"""

from __future__ import annotations

from collections.abc import Callable

import redis
from redis.exceptions import LockError

from genesys_closer.shared.redis_connection import register_lua


class OwnedLock:
    """A non-blocking lock named ``name`` that expires after ``ttl_seconds`` unless its owner extends it."""

    def __init__(self, client: redis.Redis, name: str, ttl_seconds: float) -> None:
        self.redis = client
        self.name = name
        self.ttl_seconds = ttl_seconds
        self._lock = client.lock(name, timeout=ttl_seconds, blocking=False, thread_local=False)

    def acquire(self, owner: str) -> bool:
        """Take the lock for ``owner`` unless anyone holds it (the owner itself included: never re-entered)."""
        return bool(self._lock.acquire(blocking=False, token=owner))

    def take_over(self, gone: str, owner: str) -> bool:
        """Take the lock for ``owner`` if it is still held by ``gone`` (a holder the caller knows is gone), with a
        full time-to-live; False when it changed meanwhile (expired, released, or taken by someone else)."""
        encoded = owner.encode()  # as redis-py's Lock keeps its token (utf-8 bytes)
        script = register_lua(self.redis, "lock_take_over.lua")
        taken = script(keys=[self.name], args=[gone, encoded, int(self.ttl_seconds * 1000)])
        if not taken:
            return False
        self._lock.local.token = encoded
        return True

    def owner(self) -> str | None:
        value = self.redis.get(self.name)
        if value is None:
            return None
        return value.decode() if isinstance(value, bytes) else str(value)

    def extend(self) -> bool:
        """Start this handle's time-to-live over; False when the lock expired or changed hands."""
        return self._as_owner(self._lock.reacquire)

    def release(self) -> bool:
        """Release the lock if this handle still owns it; False when it had expired or changed hands."""
        return self._as_owner(self._lock.release)

    @staticmethod
    def _as_owner(action: Callable[[], object]) -> bool:
        try:
            action()
        except LockError:
            return False
        return True

    def __enter__(self) -> OwnedLock:
        return self

    def __exit__(self, *_: object) -> None:
        self.release()
