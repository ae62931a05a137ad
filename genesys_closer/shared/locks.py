"""Redis locks with owner tokens (redis-py's ``Lock``): only the owner can extend or release a lock.

Every lock in genesys-closer goes through ``OwnedLock``: the fleet token refresh, the per-conversation in-flight
lock, the single sweep, the feed pass and the recovery check. A lock always has a time-to-live, so a process that dies
holding one delays the others by at most that long; a caller that can prove the holder gone takes the lock over
(``take_over``, a compare-and-set on the holder's token) instead of waiting (the in-flight lock does:
``worker/running/inflight_lock.py``).

A lock taken with ``acquire_in_run`` names in its token the Redis ``run_id`` it was taken under (``<run id>/<own
part>``). Redis keeps a lock across a restart (AOF) with its absolute expiry, but a holder cut off by the restart
can no longer release it; so a caller that finds the lock held under another run id than Redis' current one takes it
over at once. The holder may still be alive and reconnect: such a lock is for passes that check, between their
steps, that they still own it (``extend``) and stop when they lost it (the recovery check:
``worker/recovery/redrive.py``).
"""

from __future__ import annotations

import logging
import uuid
from collections.abc import Callable

import redis
from redis.exceptions import LockError

from genesys_closer.shared.redis_connection import register_lua

RUN_SEPARATOR = "/"
log = logging.getLogger(__name__)


def redis_run_id(client: redis.Redis) -> str:
    """The run id of the Redis server ``client`` talks to (a new one at every start, and on another server after a
    failover); empty where the server does not report one."""
    return str(client.info("server").get("run_id", ""))


def run_of(token: str) -> str:
    """The Redis run id a token written by ``acquire_in_run`` names; empty for any other token."""
    run_id, separator, _ = token.partition(RUN_SEPARATOR)
    return run_id if separator else ""


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

    def acquire_or_take_over(self, owner: str, holder_is_gone: Callable[[str], bool]) -> bool:
        """Take the lock for ``owner`` unless anyone holds it, or take it over (compare-and-set on the token read)
        from a holder whose token ``holder_is_gone`` says is cut off for good."""
        if self.acquire(owner):
            return True
        holder = self.owner()
        if holder is None:
            return self.acquire(owner)  # released or expired meanwhile: one more try
        return holder_is_gone(holder) and self.take_over(holder, owner)

    def acquire_in_run(self, run_id: str) -> bool:
        """Take the lock under Redis run ``run_id`` (its current one, read by the caller): at once if nobody holds
        it, or by taking it over from a holder that took it under another run of Redis (a restart or failover since
        cut it off). A holder under this run, or with a token that names no run, is respected."""

        taken_over: list[str] = []

        def earlier_run(holder: str) -> bool:
            held_under = run_of(holder)
            taken_over.append(holder)
            return bool(run_id and held_under) and held_under != run_id

        if not self.acquire_or_take_over(f"{run_id}{RUN_SEPARATOR}{uuid.uuid4().hex}", earlier_run):
            return False
        if taken_over:
            log.info("lock %s was held under an earlier Redis run (restarted or failed over since): taken over",
                     self.name)
        return True

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
