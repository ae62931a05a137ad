"""One org's Genesys not answering: after ``threshold`` timeouts in a row (no reply in between, fleet-wide), only one
request of the org is out at a time (the probe); the org's other requests are deferred (``RateLimited``, so their
tasks wait with a countdown, holding no pool process) until a reply shows the host answers again.

Why: a host that accepts connections and never answers (a stalled proxy or edge, a network black hole after the
handshake) costs each request a whole read timeout. Without this gate every task of that org sat through its
timeouts (and their inline retries) up to the soft time limit, so a few dozen of its closes held every pool process
and no other org's close ran at all. Connection refusals and 5xx are fast and are not counted here."""

from __future__ import annotations

import math
from typing import Protocol

import redis

from genesys_closer.config.redis_keys import RedisKeys
from genesys_closer.worker.genesys.errors import RateLimited

TIMEOUTS_IN_A_ROW = 3  # occasional slow replies (latency spikes) never come three in a row without a reply between
COUNT_TTL_SECONDS = 600  # a count no reply ever reset is forgotten after this


class Reachability(Protocol):
    def before_send(self, label: str) -> None:
        """Raise ``RateLimited`` when the org's host is not answering and another request is its probe."""

    def answered(self) -> None: ...

    def timed_out(self) -> None: ...


class AlwaysReachable:
    """Without Redis (a single process: ``genesys-closer check``): nothing is gated."""

    def before_send(self, label: str) -> None:
        return None

    def answered(self) -> None:
        return None

    def timed_out(self) -> None:
        return None


class RedisReachability:
    """The fleet-wide gate of one OAuth client of one org (its keys: ``rate_limit(bucket, "timeouts" | "probe")``).
    ``probe_seconds``: how long one probe may take (connect plus read timeout)."""

    def __init__(self, client: redis.Redis, keys: RedisKeys, bucket: str, probe_seconds: float,
                 threshold: int = TIMEOUTS_IN_A_ROW) -> None:
        self.redis = client
        self.count_key = keys.rate_limit(bucket, "timeouts")
        self.probe_key = keys.rate_limit(bucket, "probe")
        self.probe_ms = max(1000, math.ceil(probe_seconds * 1000) + 1000)
        self.threshold = threshold
        self._counted = False  # this process saw a count: the next reply clears it

    def before_send(self, label: str) -> None:
        count = int(self.redis.get(self.count_key) or 0)
        self._counted = count > 0
        if count < self.threshold:
            return
        if self.redis.set(self.probe_key, "1", nx=True, px=self.probe_ms):
            return  # this request is the probe
        wait = max(1.0, (self.redis.pttl(self.probe_key) or 0) / 1000)
        raise RateLimited(f"the org's Genesys did not answer {count} requests in a row; {label} deferred while one "
                          "probe request tries", retry_after_seconds=wait)

    def answered(self) -> None:
        if self._counted:
            self.redis.delete(self.count_key, self.probe_key)
            self._counted = False

    def timed_out(self) -> None:
        with self.redis.pipeline() as pipe:
            pipe.incr(self.count_key)
            pipe.expire(self.count_key, COUNT_TTL_SECONDS)
            pipe.delete(self.probe_key)  # the probe ended: the next request may probe again
            pipe.execute()
