"""Re-sending work the broker lost: stalled batches, lost standalone closes, and everything in flight when Redis
restarted.

kombu on Redis can lose a message: one a SIGKILL catches between the pop from the queue and its ``unacked`` record,
or ones in flight when Redis restarts. Two checks, run by beat every ``RECOVERY_CHECK_SECONDS``, at most one run
at a time in the fleet:

- **Redis restarted** (its ``run_id`` changed since the last check): at once, and on every check for
  ``AFTERMATH_SECONDS`` after it, the messages workers took and no longer run (kombu's ``unacked`` entries whose
  task no worker reports as active, reserved or scheduled: the connection loss cancelled them) go back to their
  queues through kombu's own restore, instead of after the visibility timeout; then every running batch's items
  without an outcome, and every tracked standalone close, that the broker no longer holds are published again.
- **Stalled**: a batch with no progress for ``BATCH_STALL_SECONDS``, or a standalone close older than that, gets
  the same treatment.
- **Enqueue interrupted**: a batch still ``enqueuing`` whose builder stopped extending its lease (an intake restart
  mid-enqueue, a killed ``close_many``; see ``shared.enqueue_lease``) is taken over on the next check: it is marked
  enqueued and fed (its items are all in its feed), or, if its items were not all stored yet (nobody got its id),
  it is discarded.
- **Fed batches** (``shared.feeder``): every check forgets counted items whose refill a killed worker never made,
  refills every running batch up to its in-flight bound, and records an ended batch's items never fed. For a fed
  batch, what "its items without an outcome" means above is its in-flight items: the ones not fed yet wait in
  its feed, safe in Redis, and its cursor never moves back.

"What the broker still holds" (queued or unacknowledged, see ``broker_scan``) is never re-sent, so the re-driven
copies are only the lost ones; a copy that races a late original is harmless (in-flight lock, counted once).

**The recovery lock** (``redrive_lock``, ``LOCK_SECONDS``) keeps passes from running side by side. Its token names
the Redis ``run_id`` it was taken under (``OwnedLock.acquire_in_run``). A check running as Redis stopped cannot
release it, and Redis comes back from its AOF (or a promoted replica) with the lock still there: every check used to
skip until it expired, ``LOCK_SECONDS`` after it was taken, and with them the restart re-drive, the most urgent one
(seen in ``tests/chaos/test_redis_flap.py``). Now a check that finds the lock held under another run id than Redis'
current one takes it over at once (a compare-and-set on the token it read, so of two checks one wins); a lock taken
under the current run id, or with a token naming no run, is respected as before. The restart is noted as handled
(``redis_run_id`` set to the new run id) only by a pass that went through to its end, so a pass that fails or is cut
off after it saw the restart leaves the re-drive to the next one.

The cut-off holder may still be alive: its worker reconnects and its pass goes on. Before each step (after the
feed; before the restart check's restore; before each interrupted enqueue, batch and standalone close) a pass
extends the lock, which also keeps a long pass from outliving its time-to-live, and stops when the lock is no longer
its own. So an old pass does at most the step it was in while the new one runs; each step is harmless twice:

- the feed (``advance_all``) has its own lock, taken over the same way (``shared.feeder`` says why a batch two feed
  passes advance is safe);
- kombu's ``restore_by_tag`` moves a delivery back in a transaction watching ``unacked``: a tag two passes restore
  is put back once (the second finds it gone);
- an interrupted enqueue is taken over with its lease's compare-and-set: one pass wins;
- a batch's lost items or a standalone close re-sent by both (the new pass's broker scan may have looked before the
  old pass's copies were published: at most the one batch or close the old pass was re-sending) make a second copy:
  the in-flight lock keeps it from running while the first runs, a batch item's outcome is counted once
  (``record_outcome.lua``), and the PATCH claim and progress marker keep a second PATCH from being sent blind; the
  cost is the copy's read of the conversation. Each re-sent standalone close is tracked under its own task id until
  its outcome is recorded.
"""

from __future__ import annotations

import json
import logging
import time
import uuid
from collections.abc import Callable, Iterable
from dataclasses import dataclass, field

import redis

from genesys_closer.config.redis_keys import KEYS, RedisKeys
from genesys_closer.shared.batches import BatchWriter
from genesys_closer.shared.enqueue_lease import EnqueueLease
from genesys_closer.shared.locks import OwnedLock, redis_run_id
from genesys_closer.shared.names import QUEUE_BULK, QUEUE_INTERACTIVE
from genesys_closer.shared.redis_connection import text
from genesys_closer.shared.stores import ResultStores
from genesys_closer.worker.checks.batched_checks import CheckQueue
from genesys_closer.worker.ops import metrics
from genesys_closer.worker.recovery.broker_scan import UNACKED_INDEX, HeldClose, held_closes, unacked_task_id

log = logging.getLogger("genesys_closer.worker")
LOCK_SECONDS = 60
MEMORY_WARNING = 0.8
AFTERMATH_SECONDS = 60.0  # after a restart, orphaned deliveries are looked for on every check this long
FRESH_DELIVERY_SECONDS = 5.0  # a delivery younger than this may not show in its worker's lists yet
INSPECT_TIMEOUT_SECONDS = 1.0
RECOVERY_FEED_SECONDS = 10.0  # a recovery check advances fed batches this long at most (the feed task goes on)


class _LockLost(Exception):
    """This pass no longer owns the recovery lock: a newer check took it over (control flow, caught in ``run``)."""


class _Steps:
    """Called before each step of a pass: extends the lock (so a long pass never outlives its time-to-live), or
    raises ``_LockLost`` when the pass no longer owns it."""

    def __init__(self, lock: OwnedLock) -> None:
        self.lock = lock

    def __call__(self) -> None:
        if not self.lock.extend():
            raise _LockLost(self.lock.name)


def remember_redis_run_id(client: redis.Redis, keys: RedisKeys = KEYS) -> None:
    """Note the current Redis run id unless one is noted (workers do this at start, so that a restart before the
    first recovery check is still seen as one); each org keeps its own, so each org's recovery sees a restart."""
    client.set(keys.redis_run_id, redis_run_id(client), nx=True)


def check_redis_memory(client: redis.Redis, warn_at: float = MEMORY_WARNING) -> float:
    """Redis' used_memory / maxmemory (0 without a maxmemory): a metric, and a warning from ``warn_at`` on. With
    ``noeviction`` a full Redis refuses writes, so the warning comes before enqueues start failing."""
    memory = client.info("memory")
    limit = float(memory.get("maxmemory", 0) or 0)
    used = float(memory.get("used_memory", 0) or 0) / limit if limit else 0.0
    metrics.REDIS_MEMORY_USED.set(used)
    if used >= warn_at:
        log.warning("Redis memory at %.0f%% of maxmemory (%s): shorten RESULTS_TTL_SECONDS or raise maxmemory; at "
                    "100%% new closes are refused", used * 100, memory.get("maxmemory_human", limit))
    return used


@dataclass
class RecoveryReport:
    redis_restarted: bool = False
    restored: int = 0
    memory_used: float = 0.0
    batches: dict[str, int] = field(default_factory=dict)
    standalone: int = 0
    checks_kicked: bool = False
    resumed: dict[str, int] = field(default_factory=dict)  # batches whose interrupted enqueue was finished
    discarded: list[str] = field(default_factory=list)  # batches whose builder died before storing every item
    fed: int = 0  # items fed, or (an ended batch's) recorded without being fed
    lost_lock: bool = False  # a newer check took the lock over mid-pass: this one stopped

    def as_dict(self) -> dict[str, object]:
        return {"redis_restarted": self.redis_restarted, "restored": self.restored, "memory_used": self.memory_used,
                "batches": dict(self.batches), "fed": self.fed,
                "standalone": self.standalone, "checks_kicked": self.checks_kicked, "resumed": dict(self.resumed),
                "discarded": list(self.discarded), "lost_lock": self.lost_lock}


class Recovery:
    def __init__(self, client: redis.Redis, results: ResultStores, batches: BatchWriter, stall_seconds: float,
                 *, held: Callable[[redis.Redis], Iterable[HeldClose]] = held_closes,
                 checks: CheckQueue | None = None) -> None:
        self.checks = checks
        self.redis = client
        self.results = results
        self.keys = results.batches.keys
        self.batches = batches
        self.stall_seconds = stall_seconds
        self._held_source = held

    def run(self) -> RecoveryReport:
        """One recovery pass (a run that finds another in progress does nothing; one that loses its lock stops)."""
        run_id = redis_run_id(self.redis)
        lock = OwnedLock(self.redis, self.keys.redrive_lock, LOCK_SECONDS)
        report = RecoveryReport()
        if not lock.acquire_in_run(run_id):
            return report
        with lock:
            try:
                self._pass(_Steps(lock), run_id, report)
            except _LockLost:
                log.warning("recovery: this check lost its lock to a newer one (Redis restarted under it); it stops "
                            "here, the newer check does the rest")
                report.lost_lock = True
        if report.standalone or any(report.batches.values()) or report.resumed:
            log.warning("recovery: re-sent %d batch item(s) and %d standalone close(s)%s",
                        sum(report.batches.values()), report.standalone,
                        " after a Redis restart" if report.redis_restarted else " (stalled)")
        return report

    def _pass(self, step: _Steps, run_id: str, report: RecoveryReport) -> None:
        """The pass's steps, each begun only while this pass still owns the lock (``step``)."""
        report.memory_used = check_redis_memory(self.redis)
        if self.checks is not None:
            report.checks_kicked = self.checks.kick_if_overdue()
        report.fed = sum(self.batches.feeder.advance_all(RECOVERY_FEED_SECONDS).values())
        step()
        report.redis_restarted = self._redis_restarted(run_id)
        if report.redis_restarted:
            self.redis.set(self.keys.restart_aftermath, "1", ex=round(AFTERMATH_SECONDS))
        if report.redis_restarted or self.redis.exists(self.keys.restart_aftermath):
            report.restored = self._restore_orphans(time.time() - FRESH_DELIVERY_SECONDS)
        step()
        batch_ids = (self.results.batches.unfinished() if report.redis_restarted
                     else self.results.batches.stalled(self.stall_seconds))
        stale_before = None if report.redis_restarted else self.results.clock() - self.stall_seconds
        standalone = [(task_id, entry) for task_id, entry in self.results.pending.entries()
                      if stale_before is None or float(entry.get("at", 0)) <= stale_before]
        abandoned = self._abandoned_enqueues()
        if batch_ids or standalone or abandoned:
            held = self._held()
            held_tasks = {h.task_id for h in held}
            held_items = {(h.batch_id, h.conversation_id) for h in held if h.org == self.keys.org}
            for lease in abandoned:
                step()
                self._take_over(lease, held_items, report)
            for batch_id in batch_ids:
                step()
                report.batches[batch_id] = self._redrive_batch(batch_id, held_items, report.redis_restarted)
            for task_id, entry in standalone:
                if task_id not in held_tasks:
                    step()
                    report.standalone += self._resend(task_id, entry)
        step()
        self.redis.set(self.keys.redis_run_id, run_id)  # this run's restart is handled: the next check sees none

    def _abandoned_enqueues(self) -> list[EnqueueLease]:
        """Batches still being enqueued whose builder's lease has expired (each is taken over in turn: its lease is
        taken only then, so one long takeover never lets the others' leases run out)."""
        leases = [EnqueueLease(self.redis, batch_id, keys=self.keys) for batch_id in self.results.batches.enqueuing()]
        return [lease for lease in leases if not lease.held_by_anyone()]

    def _take_over(self, lease: EnqueueLease, held: set[tuple[str | None, str]], report: RecoveryReport) -> None:
        batch_id = lease.batch_id
        if not lease.take():  # its builder came back, or another recovery took it
            return
        try:
            staged_at, total, options, queue = self.results.batches.fields(batch_id, "staged_at", "total", "options",
                                                                         "queue")
            if staged_at is None or total is None:
                self.results.batches.discard(batch_id)
                report.discarded.append(batch_id)
                log.warning("batch %s: its builder died before storing every item; discarded (nobody got its id)",
                            batch_id, extra={"batch_id": batch_id})
                return
            if self.batches.feeder.has_feed(batch_id):
                count = 0
                if lease.keep():
                    self.results.batches.mark_enqueued(batch_id, int(total))
                    count = self.batches.feeder.start(batch_id)
            else:  # a batch staged before batches were fed: every item it has not counted
                missing = [cid for cid in self.results.batches.missing_items(batch_id) if (batch_id, cid) not in held]
                count = self.batches.publish(batch_id, missing, json.loads(options or "{}"), queue or QUEUE_BULK,
                                             lease=lease)
                if lease.keep():
                    self.results.batches.mark_enqueued(batch_id, int(total))
            report.resumed[batch_id] = count
            log.warning("batch %s: its enqueue was interrupted; published %d item(s)", batch_id, count,
                        extra={"batch_id": batch_id})
        finally:
            lease.release()

    def _redis_restarted(self, run_id: str) -> bool:
        """Whether Redis restarted (its run id is not ``run_id`` any more) since the last check that went to its end;
        the first check ever notes the run id (workers note it at start, ``remember_redis_run_id``)."""
        previous = self.redis.get(self.keys.redis_run_id)
        if previous is None:
            self.redis.set(self.keys.redis_run_id, run_id, nx=True)
            return False
        return text(previous) != run_id

    def _restore_orphans(self, delivered_before: float) -> int:
        """Put back (kombu's restore) the unacknowledged deliveries older than ``delivered_before`` whose task no
        worker runs, holds or has scheduled any more."""
        tags = [text(tag) for tag in self.redis.zrangebyscore(UNACKED_INDEX, 0, delivered_before)]
        if not tags:
            return 0
        known = self._tasks_on_workers()
        orphans = [tag for tag in tags if unacked_task_id(self.redis, tag) not in known]
        if not orphans:
            return 0
        with self.batches.app.connection_for_write() as connection:
            qos = connection.default_channel.qos
            for tag in orphans:
                qos.restore_by_tag(tag)
        log.warning("recovery: %d delivered message(s) no worker runs any more put back on their queues", len(orphans))
        return len(orphans)

    def _tasks_on_workers(self) -> set[str]:
        inspect = self.batches.app.control.inspect(timeout=INSPECT_TIMEOUT_SECONDS)
        ids: set[str] = set()
        for reply in (inspect.active(), inspect.reserved(), inspect.scheduled()):
            for requests in (reply or {}).values():
                for request in requests or []:
                    inner = request.get("request", request) if isinstance(request, dict) else {}
                    if isinstance(inner, dict) and inner.get("id"):
                        ids.add(str(inner["id"]))
        return ids

    def _held(self) -> set[HeldClose]:
        return set(self._held_source(self.redis))

    def _redrive_batch(self, batch_id: str, held: set[tuple[str | None, str]], restarted: bool) -> int:
        options, queue = self.results.batches.fields(batch_id, "options", "queue")
        feeder = self.batches.feeder
        uncounted = (feeder.uncounted_in_flight(batch_id) if feeder.has_feed(batch_id)
                     else self.results.batches.missing_items(batch_id))
        missing = [cid for cid in uncounted if (batch_id, cid) not in held]
        count = self.batches.publish(batch_id, missing, json.loads(options or "{}"), queue or QUEUE_BULK)
        self.results.batches.mark_redriven(batch_id, count)
        if count:
            log.warning("batch %s: re-queued %d item(s) the broker no longer held", "after a Redis restart"
                        if restarted else f"stalled for {self.stall_seconds:g} s", count, extra={"batch_id": batch_id})
        return count

    def _resend(self, task_id: str, entry: dict[str, object]) -> int:
        conversation_id = entry.get("conversation_id")
        options = entry.get("options")
        if not isinstance(conversation_id, str) or not isinstance(options, dict):
            self.results.pending.forget(task_id)
            return 0
        queue = entry.get("queue") if isinstance(entry.get("queue"), str) else QUEUE_INTERACTIVE
        # Tracked before it is sent, as the producer does: the copy can end (and forget its entry) before this pass
        # goes on, and an entry written after that would stay pending with nothing left to end it.
        new_id = str(uuid.uuid4())
        self.results.pending.track(new_id, conversation_id, options, str(queue))
        try:
            self.batches.publish_close(conversation_id, options, str(queue), task_id=new_id)
        except BaseException:
            self.results.pending.forget(new_id)
            raise
        self.results.pending.forget(task_id)
        log.warning("standalone close re-sent (task %s -> %s)", task_id, new_id,
                    extra={"conversation_id": conversation_id})
        return 1
