"""Batches fed, not flooded: a batch's items wait in Redis as compact IDs and reach the broker a few at a time.

A batch's valid IDs are stored once, fixed-width and in input order, in its **feed** (one Redis string, about
36 bytes per item), with a cursor (``fed`` in the batch hash). Its **in-flight set** holds the items handed to the
broker and not yet counted; it never holds more than the batch's bound (``BATCH_IN_FLIGHT``, stored in the batch
hash when the batch is made, so one batch has one bound whoever feeds it).

Who feeds, and how fast:

- ``start`` (when the batch is fully stored: ``close_many``, the intake's publisher, a sweep, the recovery taking
  over an interrupted enqueue) feeds the first ``bound`` items.
- Every counted outcome feeds again (``refill``, called by the worker that recorded it: ``close_run``). Items end
  only as fast as the fleet's limiter lets them make their calls, so the feed follows the limiter's pace without a
  call of its own: one item ends, one is fed. An item that waits for a batched check or retries stays in flight
  (it has no outcome), so the bound counts those too.
- The recovery check (beat) and the feed task run ``advance_all``: they forget counted items whose refill was lost
  with a killed worker, refill, and give an ended batch's remainder its outcome.
- A worker feeds an org's batch no faster than that org's limiter takes it (``pace_in_flight``): at most about
  ``FEED_LEAD_SECONDS`` of the org's rate in flight, whatever the batch's bound. More would only wait in the
  limiter's line (handed back to the broker until their turn, ``lanes``), costing a task run every
  ``TASK_MAX_COUNTDOWN_SECONDS`` each, and sit in the shared broker ahead of other orgs' work.

A cancelled or stopped batch feeds nothing more at once (``feed_take.lua`` feeds only a running batch); its items
not fed yet are recorded ``cancelled`` or ``not_attempted`` by the feed task, in chunks, counted exactly once like
any outcome (``record_outcome.lua``: a record is written once per item), then the cursor moves past them.

One ``advance_all`` pass runs at a time (a lock; a pass that finds it taken asks the running one to go on). A pass
cut off by a Redis restart cannot release it and Redis keeps it (AOF): the next pass takes it over at once, the
lock naming the Redis run it was taken under (``OwnedLock.acquire_in_run``). The cut-off pass, if it reconnects,
stops before its next batch (it extends the lock before each); the batch it was advancing is safe twice: a refill
runs concurrently with every worker's anyway, and an ended batch's records count once.
"""

from __future__ import annotations

import json
import logging
import math
import time
from collections.abc import Callable, Iterable
from typing import Any

import redis

from genesys_closer.config.redis_keys import RedisKeys
from genesys_closer.shared.locks import OwnedLock, redis_run_id
from genesys_closer.shared.names import QUEUE_BULK
from genesys_closer.shared.outcomes import CloseResult, Outcome
from genesys_closer.shared.redis_connection import register_lua, text
from genesys_closer.shared.stores import ResultStores

log = logging.getLogger("genesys_closer.worker")
ID_WIDTH = 36  # a canonical conversation id
DRAIN_CHUNK = 500  # an ended batch's remainder is recorded this many items per round trip
LOCK_SECONDS = 60
KICK_SECONDS = 5  # at most one feed task is sent per this long
FEED_BUDGET_SECONDS = 20.0  # a feed task's run stops after this long (and sends the next)
FEED_LEAD_SECONDS = 20.0  # a worker keeps about this long of an org's rate in flight per batch (``pace_in_flight``)
ENDED_STATES = {"cancelled": Outcome.CANCELLED, "stopped": Outcome.NOT_ATTEMPTED}

Publish = Callable[[str, list[str], dict[str, Any], str], int]


class BatchFeeder:
    """Stores batches' feeds and hands their items to the broker within each batch's in-flight bound."""

    def __init__(self, results: ResultStores, publish: Publish, bound: int, *,
                 kick: Callable[[], None] | None = None, clock: Callable[[], float] = time.time,
                 pace: int | None = None) -> None:
        """``bound``: a new batch's in-flight bound (stored in it); ``pace``: at most this many of a batch in flight
        when this feeder refills (the worker's: ``pace_in_flight`` of its org's rate), None for no pace."""
        self.redis: redis.Redis = results.batches.redis
        self.keys: RedisKeys = results.batches.keys  # the org's keys: each org's batches are fed on their own
        self.retention = results.batches.retention
        self.results = results
        self.publish = publish
        self.bound = bound
        self.pace = pace
        self._send_kick = kick
        self.clock = clock
        self._take = register_lua(self.redis, "feed_take.lua")
        self._skip = register_lua(self.redis, "feed_skip.lua")

    # -- building a batch --------------------------------------------------------------------------------------
    def append(self, batch_id: str, conversation_ids: list[str]) -> None:
        """Add (validated, de-duplicated) IDs to the batch's feed, in order."""
        if not conversation_ids:
            return
        if any(len(cid) != ID_WIDTH for cid in conversation_ids):
            raise ValueError("a feed holds canonical conversation ids only")
        pipe = self.redis.pipeline(transaction=False)
        pipe.append(self.keys.batch_feed(batch_id), "".join(conversation_ids))
        pipe.hincrby(self.keys.batch(batch_id), "feed_total", len(conversation_ids))
        pipe.expire(self.keys.batch_feed(batch_id), self.retention)
        pipe.execute()

    def prepare(self, batch_id: str) -> None:
        """Mark the batch as fed (before any ID is appended): its bound, an empty cursor; the feeder serves it from
        now on (it feeds it once it runs, whoever marks it enqueued and whenever they die)."""
        pipe = self.redis.pipeline(transaction=True)
        pipe.hset(self.keys.batch(batch_id), mapping={"in_flight": self.bound, "fed": 0, "feed_total": 0})
        pipe.sadd(self.keys.feeding, batch_id)
        pipe.execute()

    def has_feed(self, batch_id: str) -> bool:
        """Whether the batch has a feed (not a batch made before batches were fed: those published every item at
        once, and the recovery treats them as it did)."""
        return self.redis.hexists(self.keys.batch(batch_id), "feed_total") == 1

    def start(self, batch_id: str) -> int:
        """The batch runs (``mark_enqueued`` was called): feed its first items."""
        return self.refill(batch_id)

    def discard(self, batch_id: str) -> None:
        self.redis.delete(self.keys.batch_feed(batch_id), self.keys.batch_in_flight(batch_id))
        self.redis.srem(self.keys.feeding, batch_id)

    # -- feeding -----------------------------------------------------------------------------------------------
    def refill(self, batch_id: str, ended: Iterable[str] = ()) -> int:
        """Forget ``ended`` items that are counted, then feed up to the bound; returns how many were fed. An ended
        (cancelled, stopped) batch with items not fed yet gets the feed task sent, which records them."""
        keys = self.keys
        reply = self._take(keys=[keys.batch_feed(batch_id), keys.batch_in_flight(batch_id), keys.batch(batch_id),
                                 keys.batch_items(batch_id)],
                           args=[repr(self.clock()), ID_WIDTH, self.bound, self.retention, self.pace or 0, *ended])
        state, options, queue, unfed = text(reply[0]), text(reply[1]), text(reply[2]), int(reply[3])
        ids = [text(raw) for raw in reply[4:]]
        if ids:
            # A worker killed here leaves these items in flight without a message: the recovery re-sends them.
            self.publish(batch_id, ids, json.loads(options), queue or QUEUE_BULK)
        elif state in ENDED_STATES and unfed > 0:
            self.kick()
        return len(ids)

    def in_flight(self, batch_id: str) -> list[str]:
        """The batch's items handed to the broker and not yet forgotten (some may be counted already)."""
        return [text(raw) for raw in self.redis.zrange(self.keys.batch_in_flight(batch_id), 0, -1)]

    def uncounted_in_flight(self, batch_id: str) -> list[str]:
        """In-flight items without an outcome (the ones a lost message would leave without one)."""
        fed = self.in_flight(batch_id)
        pipe = self.redis.pipeline(transaction=False)
        for cid in fed:
            pipe.hexists(self.keys.batch_items(batch_id), cid)
        return [cid for cid, counted in zip(fed, pipe.execute(), strict=True) if not counted]

    def kick(self) -> None:
        """Send the feed task, unless one was sent in the last few seconds."""
        if self._send_kick is not None and self.redis.set(self.keys.feeder("kick"), "1", nx=True, ex=KICK_SECONDS):
            self._send_kick()

    # -- the feed task and the recovery check ------------------------------------------------------------------
    def advance_all(self, budget_seconds: float = FEED_BUDGET_SECONDS) -> dict[str, int]:
        """One pass over every batch served (at most one pass at a time in the fleet): forget what is counted,
        refill, record an ended batch's remainder; a finished or expired batch is no longer served. Returns the
        items fed or recorded per batch. A pass that runs out of ``budget_seconds``, or that another run asked for
        while it held the lock, sends the feed task to go on once it has released the lock."""
        lock = OwnedLock(self.redis, self.keys.feeder("lock"), LOCK_SECONDS)
        if not lock.acquire_in_run(redis_run_id(self.redis)):
            self.redis.set(self.keys.feeder("again"), "1", ex=LOCK_SECONDS)  # the running pass may be past its batch
            return {}
        done: dict[str, int] = {}
        deadline = time.monotonic() + budget_seconds
        go_on = False
        with lock:
            self.redis.delete(self.keys.feeder("again"))  # what was asked for until now, this pass does
            for raw in sorted(self.redis.smembers(self.keys.feeding)):
                if time.monotonic() >= deadline or not lock.extend():
                    go_on = True
                    break
                batch_id = text(raw)
                done[batch_id] = self.advance(batch_id, deadline)
            go_on = go_on or time.monotonic() >= deadline
        if go_on or self.redis.delete(self.keys.feeder("again")):
            self.redis.delete(self.keys.feeder("kick"))
            self.kick()
        return done

    def advance(self, batch_id: str, deadline: float) -> int:
        state, finished_at, reason = self.results.batches.fields(batch_id, "state", "finished_at", "reason")
        if state is None or finished_at is not None:
            self.discard(batch_id)
            return 0
        if state in ENDED_STATES:
            return self._record_unfed(batch_id, ENDED_STATES[state], _reason(state, reason or ""), deadline)
        return self.refill(batch_id, self.in_flight(batch_id))

    def _record_unfed(self, batch_id: str, outcome: Outcome, reason: str, deadline: float) -> int:
        """Give every item not fed yet its outcome (record first, then move the cursor: a crash in between only
        repeats records that count once)."""
        recorded = 0
        while time.monotonic() < deadline:
            fed, total = (int(v or 0) for v in self.results.batches.fields(batch_id, "fed", "feed_total"))
            if fed >= total:
                break
            upto = min(fed + DRAIN_CHUNK, total)
            raw = self.redis.getrange(self.keys.batch_feed(batch_id), fed * ID_WIDTH, upto * ID_WIDTH - 1)
            ids = [text(raw)[i:i + ID_WIDTH] for i in range(0, len(raw), ID_WIDTH)]
            now = self.clock()
            self.results.outcomes.record_many([CloseResult(cid, outcome, attempts=0, started_at=now, finished_at=now,
                                                  error=reason, batch_id=batch_id) for cid in ids])
            recorded += len(ids)
            if int(self._skip(keys=[self.keys.batch_feed(batch_id), self.keys.batch(batch_id)],
                              args=[fed + len(ids) if ids else total])) == 0:
                break
        if recorded:
            log.info("batch %s: %d item(s) never fed recorded %s", batch_id, recorded, outcome.value,
                     extra={"batch_id": batch_id})
        return recorded


def pace_in_flight(rate_limit_per_minute: float, lead_seconds: float = FEED_LEAD_SECONDS) -> int:
    """How many of a batch's items a worker keeps in flight for an org at ``rate_limit_per_minute``: what its limiter
    takes in ``lead_seconds`` (at about one call per batch item), at least 20."""
    return max(20, math.ceil(rate_limit_per_minute / 60 * lead_seconds))


def _reason(state: str, reason: str) -> str:
    """The reason an item of an ended batch was not run (as ``close_run`` words it for an item that was fed)."""
    return "batch cancelled before this item ran" if state == "cancelled" else f"batch stopped ({reason})"
