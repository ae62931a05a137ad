"""Trust but verify: analytics confirmations are sampled against the live conversation, and the whole fleet stops
trusting them for a while after one disagrees.

    trusted ──a live read disagrees──> cooling ──ANALYTICS_DISTRUST_SECONDS──> probation ──a clean sample──> trusted
                                          ^                                       │
                                          └──────── a live read disagrees ────────┘

* **trusted**: of the items a batched read shows ended (``conversationEnd``), a sample (``ANALYTICS_VERIFY_SHARE``,
  at least one per read) is read live first; when every sampled read agrees, the rest are confirmed by analytics.
* **cooling**: every item analytics shows ended is confirmed by reading the conversation (the direct path's
  confirmation, with escalation per policy).
* **probation**: as trusted, but the sample is never empty, and a clean one is what restores trust.

A *disagreement* is a live read showing a participant still connected where analytics shows the conversation ended
(a sampled confirmation, or a pre-check row that looked ended). The decisions (``TrustMode``, ``sample_size``,
``settle``) are pure; ``FleetTrust`` keeps the state in one Redis hash (``KEYS.analytics_trust``) so every worker
process sees the same mode, and reports it as a metric, a warning log line and in ``genesys-closer check``.
"""

from __future__ import annotations

import logging
import math
import random
import time
from collections.abc import Callable, Sequence
from dataclasses import dataclass, field
from enum import StrEnum
from typing import Any

import redis

from genesys_closer.config.redis_keys import KEYS, RedisKeys
from genesys_closer.shared.lanes import INTERACTIVE, lane
from genesys_closer.shared.redis_connection import register_lua, text
from genesys_closer.worker.closing.conversation_state import is_closed
from genesys_closer.worker.genesys.client import CallTally, GenesysClient
from genesys_closer.worker.genesys.errors import GenesysError
from genesys_closer.worker.ops import metrics

log = logging.getLogger("genesys_closer.worker")
STATE_TTL_SECONDS = 30 * 86_400  # a fleet left idle in probation forgets it eventually


class TrustMode(StrEnum):
    TRUSTED = "trusted"
    COOLING = "cooling"  # after a disagreement: every confirmation is read live
    PROBATION = "probation"  # cooling-off over: trusted again after a clean sample


class Verdict(StrEnum):
    AGREED = "agreed"  # the live read shows every participant gone, as analytics does
    DISAGREED = "disagreed"  # the live read shows a participant still connected
    UNKNOWN = "unknown"  # the live read failed


@dataclass(frozen=True)
class TrustState:
    mode: TrustMode
    since: float | None = None
    until: float | None = None
    reason: str = ""

    def describe(self, now: float) -> str:
        if self.mode is TrustMode.TRUSTED:
            return "analytics confirmations trusted (a sample of each read is verified live)"
        started = time.strftime("%Y-%m-%d %H:%M:%S UTC", time.gmtime(self.since or now))
        if self.mode is TrustMode.COOLING:
            left = max(0.0, (self.until or now) - now)
            return (f"DISTRUSTED since {started}: every confirmation is read live for {left:.0f} s more, then until "
                    f"a clean sample ({self.reason})")
        return f"DISTRUSTED since {started}: trusted again after the next clean sample ({self.reason})"


def sample_size(ended: int, share: float, mode: TrustMode) -> int:
    """How many of ``ended`` items (shown ended by one read) to read live: ``share`` of them rounded up, at least one
    when ``share`` > 0 or while on probation; none while cooling (every one is read live anyway)."""
    if ended <= 0 or mode is TrustMode.COOLING:
        return 0
    wanted = math.ceil(share * ended - 1e-9) if share > 0 else 0
    if share > 0 or mode is TrustMode.PROBATION:
        wanted = max(1, wanted)
    return min(ended, wanted)


def pick_sample(tokens: Sequence[str], share: float, mode: TrustMode,
                rng: Callable[[Sequence[str], int], list[str]] = random.sample) -> list[str]:
    return rng(list(tokens), sample_size(len(tokens), share, mode))


@dataclass(frozen=True)
class Settlement:
    """What becomes of the items one read showed ended (tokens), after the sample's live reads."""

    by_analytics: list[str] = field(default_factory=list)  # confirmed by analytics
    verified: list[str] = field(default_factory=list)  # sampled; the live read agreed: confirmed by it
    disagreed: list[str] = field(default_factory=list)  # the direct path, escalation per policy
    read_live: list[str] = field(default_factory=list)  # the direct path's confirmation: analytics is not trusted
    wait: list[str] = field(default_factory=list)  # no sample could be read: read again later
    clean: bool = False  # a sample was read and every read agreed

    def by_kind(self) -> dict[str, list[str]]:
        return {"by_analytics": self.by_analytics, "verified": self.verified, "disagreed": self.disagreed,
                "read_live": self.read_live, "wait": self.wait}


def settle(mode: TrustMode, ended: Sequence[str], verdicts: dict[str, Verdict]) -> Settlement:
    """Pure: ``ended`` the items a read showed ended, ``verdicts`` the live reads of its sample."""
    unsampled = [token for token in ended if token not in verdicts]
    agreed = [t for t, v in verdicts.items() if v is Verdict.AGREED]
    disagreed = [t for t, v in verdicts.items() if v is Verdict.DISAGREED]
    unknown = [t for t, v in verdicts.items() if v is Verdict.UNKNOWN]
    if mode is TrustMode.COOLING:
        return Settlement(verified=agreed, disagreed=disagreed, read_live=[*unsampled, *unknown])
    if disagreed:
        return Settlement(verified=agreed, disagreed=disagreed, read_live=[*unsampled, *unknown])
    if agreed:
        return Settlement(by_analytics=unsampled, verified=agreed, read_live=unknown, clean=True)
    if unknown:
        return Settlement(read_live=unknown, wait=unsampled)
    if mode is TrustMode.PROBATION:
        return Settlement(wait=unsampled)  # not reached with a sample of at least one
    return Settlement(by_analytics=unsampled)  # no verification asked for (ANALYTICS_VERIFY_SHARE=0)


class FleetTrust:
    """The fleet-wide trust state, in one Redis hash: absent = trusted."""

    def __init__(self, client: redis.Redis, cooling_seconds: float, *, clock: Callable[[], float] = time.time,
                 keys: RedisKeys = KEYS) -> None:
        self.redis = client
        self.cooling_seconds = cooling_seconds
        self.clock = clock
        self.key = keys.analytics_trust
        self.org = keys.org
        self._restore = register_lua(client, "trust_restore.lua")

    def state(self) -> TrustState:
        fields = {text(k): text(v) for k, v in self.redis.hgetall(self.key).items()}
        if "until" not in fields:
            metrics.ANALYTICS_TRUSTED.labels(self.org).set(1)
            return TrustState(TrustMode.TRUSTED)
        metrics.ANALYTICS_TRUSTED.labels(self.org).set(0)
        until = float(fields["until"])
        mode = TrustMode.COOLING if self.clock() < until else TrustMode.PROBATION
        return TrustState(mode, float(fields.get("since") or until), until, fields.get("reason", ""))

    def disagreed(self, conversation_id: str, where: str) -> None:
        """A live read contradicted analytics: confirm live for the cooling-off period, then until a clean sample."""
        now = self.clock()
        reason = f"conversation {conversation_id}: analytics showed it ended at the {where}, a live read shows a " \
                 "participant still connected"
        pipe = self.redis.pipeline(transaction=True)
        pipe.hsetnx(self.key, "since", repr(now))
        pipe.hset(self.key, mapping={"until": repr(now + self.cooling_seconds), "reason": reason[:500]})
        pipe.hincrby(self.key, "disagreements", 1)
        pipe.expire(self.key, STATE_TTL_SECONDS)
        pipe.execute()
        metrics.ANALYTICS_DISTRUSTS.labels(self.org).inc()
        metrics.ANALYTICS_VERIFICATIONS.labels(Verdict.DISAGREED.value, self.org).inc()
        metrics.ANALYTICS_TRUSTED.labels(self.org).set(0)
        log.warning("analytics disagrees with the live conversation (%s): every batched confirmation is read live "
                    "for %.0f s, and until a sample agrees again", reason, self.cooling_seconds,
                    extra={"conversation_id": conversation_id})

    def sampled(self, verdicts: dict[str, Verdict], mode: TrustMode) -> None:
        """Count a read's sample; a clean one ends a probation."""
        for verdict in verdicts.values():
            if verdict is not Verdict.DISAGREED:  # disagreements are counted by ``disagreed``
                metrics.ANALYTICS_VERIFICATIONS.labels(verdict.value, self.org).inc()
        clean = bool(verdicts) and all(v is Verdict.AGREED for v in verdicts.values())
        if clean and mode is TrustMode.PROBATION and int(self._restore(keys=[self.key], args=[repr(self.clock())])):
            metrics.ANALYTICS_TRUSTED.labels(self.org).set(1)
            log.warning("analytics confirmations trusted again: %d sampled live read(s) agreed", len(verdicts))


MAX_SAMPLE_READS = 10  # live reads one pump makes per analytics read; more are left to the items' own tasks


@dataclass
class Verified:
    """A read's ended items after their sample was read live (``ConfirmVerifier.verify``)."""

    mode: TrustMode
    settlement: Settlement
    reads: dict[str, dict[str, Any]] = field(default_factory=dict)  # token -> the live conversation read
    calls: dict[str, float] = field(default_factory=dict)  # token -> API calls of its live read


class ConfirmVerifier:
    """Reads a sample of the items one analytics read shows ended, live, and settles all of them (``settle``).

    ``must_verify`` items are always in the sample: their PATCH's own answer did not show the conversation ended, so
    the live service has not yet had its say. At most ``MAX_SAMPLE_READS`` are read here (the rest count as
    unknown and are confirmed by their own task's read)."""

    def __init__(self, trust: FleetTrust, client: GenesysClient, retrying: Callable[[Callable[[], Any]], Any],
                 share: float, *, rng: Callable[[Sequence[str], int], list[str]] = random.sample) -> None:
        self.trust = trust
        self.client = client
        self.retrying = retrying
        self.share = share
        self.rng = rng

    def verify(self, ended: dict[str, str], must_verify: set[str] | frozenset[str] = frozenset()) -> Verified:
        """``ended``: token -> conversation id of each item the read showed ended."""
        if not ended:
            return Verified(TrustMode.TRUSTED, Settlement())  # nothing to settle: the state is not even read
        mode = self.trust.state().mode
        if mode is TrustMode.COOLING:
            return Verified(mode, settle(mode, list(ended), {}))
        forced = [token for token in ended if token in must_verify]
        rest = [token for token in ended if token not in must_verify]
        chosen = forced + pick_sample(rest, self.share, mode, self.rng)
        verdicts: dict[str, Verdict] = {}
        verified = Verified(mode, Settlement())
        for token in chosen:
            if len(verified.calls) >= MAX_SAMPLE_READS:
                verdicts[token] = Verdict.UNKNOWN
                continue
            tally = CallTally()
            try:
                with lane(INTERACTIVE):
                    conversation = self.retrying(lambda cid=ended[token], t=tally:  # type: ignore[misc]
                                                 self.client.get_message_conversation(cid, t))
            except GenesysError:
                verdicts[token] = Verdict.UNKNOWN
            else:
                verified.reads[token] = conversation
                verdicts[token] = Verdict.AGREED if is_closed(conversation) else Verdict.DISAGREED
            verified.calls[token] = float(tally.api_calls)
        for token, verdict in verdicts.items():
            if verdict is Verdict.DISAGREED:
                self.trust.disagreed(ended[token], "confirmation")
        self.trust.sampled(verdicts, mode)
        verified.settlement = settle(mode, list(ended), verdicts)
        return verified
