"""Idempotency keys for batch uploads: a retried ``POST /v1/batches`` with the same ``Idempotency-Key`` returns the
batch the first request started, instead of starting a second one.

Scope: a key belongs to the credential that sent it (two callers choosing the same key never see each other's
batch), and is remembered for ``INTAKE_IDEMPOTENCY_TTL_SECONDS`` (24 hours by default, at most the results
retention). The record lives in Redis, so every intake process behind a balancer honours it. A record is:

- ``pending``: a request with that key is being stored right now (short TTL, so a request whose intake died does
  not block the key for long); a concurrent retry gets 409 with ``Retry-After``;
- ``done``: the answer the first request got (status and body), returned as is to every retry with the same body;
  a retry with a different body (content type and bytes) gets 422, because the key is meant for one upload.
"""

from __future__ import annotations

import hashlib
import json
import re
import uuid
from dataclasses import dataclass
from typing import Any

import redis

from genesys_closer.config.redis_keys import KEYS

PENDING_SECONDS = 120  # longer than storing the largest batch takes; a dead request frees its key after it
_KEY = re.compile(r"^[\x21-\x7e]{1,200}$")  # printable ASCII without spaces, as Stripe and the IETF draft allow


def is_valid_key(value: str) -> bool:
    return _KEY.fullmatch(value) is not None


def fingerprint(content_type: str, body: bytes) -> str:
    return hashlib.sha256(content_type.encode() + b"\0" + body).hexdigest()


@dataclass(frozen=True)
class Claim:
    """What claiming a key found: ``won`` (go ahead, then ``complete`` or ``abandon``), or an earlier record."""

    won: bool
    pending: bool = False
    same_body: bool = False
    status: int = 0
    body: dict[str, Any] | None = None


class IdempotencyKeys:
    def __init__(self, client: redis.Redis, ttl_seconds: int) -> None:
        self.redis = client
        self.ttl_seconds = ttl_seconds

    def _name(self, credential: str, key: str) -> str:
        return KEYS.idempotency(credential, hashlib.sha256(key.encode()).hexdigest()[:32])

    def claim(self, credential: str, key: str, body_fingerprint: str) -> tuple[Claim, str]:
        """Claim ``key`` for this request, or return what an earlier request with it left; also the claim's token
        (needed to complete or abandon it)."""
        token = uuid.uuid4().hex
        name = self._name(credential, key)
        pending = json.dumps({"state": "pending", "fingerprint": body_fingerprint, "token": token})
        if self.redis.set(name, pending, nx=True, ex=PENDING_SECONDS):
            return Claim(won=True), token
        raw = self.redis.get(name)
        if raw is None:  # it expired between the two calls: try once more
            if self.redis.set(name, pending, nx=True, ex=PENDING_SECONDS):
                return Claim(won=True), token
            raw = self.redis.get(name) or b"{}"
        record = json.loads(raw)
        same = record.get("fingerprint") == body_fingerprint
        if record.get("state") != "done":
            return Claim(won=False, pending=True, same_body=same), token
        return Claim(won=False, same_body=same, status=int(record.get("status", 202)), body=record.get("body")), token

    def complete(self, credential: str, key: str, body_fingerprint: str, status: int, body: dict[str, Any]) -> None:
        """Remember the answer for the key's TTL."""
        record = json.dumps({"state": "done", "fingerprint": body_fingerprint, "status": status, "body": body},
                            separators=(",", ":"))
        self.redis.set(self._name(credential, key), record, ex=self.ttl_seconds)

    def abandon(self, credential: str, key: str, token: str) -> None:
        """The request failed before it started a batch: free the key (only if this request still holds it)."""
        name = self._name(credential, key)
        raw = self.redis.get(name)
        if raw is not None and json.loads(raw).get("token") == token:
            self.redis.delete(name)
