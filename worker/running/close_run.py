"""One close, as a worker process runs it around the closer: the decisions the Celery task must not hold itself.

Per task run: reject a bad ID (outcome ``invalid_id``, no request), honour a cancelled or stopped batch, respect
the circuit breaker, take the per-conversation in-flight lock (duplicates close once), run the closer, and then
either record the outcome (exactly once per batch item) or ask the task to retry later with a countdown.
"""

from __future__ import annotations

import logging
import random
import time
from collections.abc import Callable
from dataclasses import dataclass, replace
from typing import Any

import redis

from genesys_closer.config.settings import WorkerSettings
from genesys_closer.shared.batches import ORIGIN_SWEEP
from genesys_closer.shared.feeder import BatchFeeder
from genesys_closer.shared.ids import InvalidConversationId, parse_conversation_id
from genesys_closer.shared.lanes import BULK, INTERACTIVE, lane
from genesys_closer.shared.names import QUEUE_BULK, QUEUE_INTERACTIVE
from genesys_closer.shared.options import CloseOptions, OptionLimits
from genesys_closer.shared.outcomes import (
    CONFIRMED_BY_READ,
    CONFIRMED_BY_READ_DISAGREED,
    CONFIRMED_BY_READ_DISTRUSTED,
    CloseResult,
    Outcome,
)
from genesys_closer.shared.stores import ResultStores
from genesys_closer.shared.stores.batch_store import ItemView, is_batch_id
from genesys_closer.worker.checks.analytics_trust import FleetTrust
from genesys_closer.worker.checks.batched_checks import CheckQueue
from genesys_closer.worker.checks.item_lifecycle import (
    ClosedElsewhere,
    Concluded,
    Finish,
    Hand,
    Item,
    ItemRef,
    Join,
    LiveRead,
    PatchTaken,
    Stage,
    TaskStarted,
    next_step,
)
from genesys_closer.worker.checks.item_progress import ItemProgress
from genesys_closer.worker.closing.closer import Closer, PatchSent
from genesys_closer.worker.genesys.errors import RetryableError
from genesys_closer.worker.genesys.http_policy import backoff_seconds
from genesys_closer.worker.ops import metrics
from genesys_closer.worker.running.breaker import CircuitBreaker
from genesys_closer.worker.running.inflight_lock import InflightLock
from genesys_closer.worker.running.patch_guard import PatchGuard, claim_seconds

log = logging.getLogger("genesys_closer.worker")
# 403 codes about one conversation, not the OAuth client (Genesys' error catalogue: division permissions)
ITEM_ONLY_CODES = frozenset({"missing.division.permission", "missing.division.permissions", "not.authorized.division"})
MAX_ECHO = 100
HAND_BACK_JITTER_SECONDS = 0.05  # spread over a hand-back's countdown (turns are one limiter interval apart)
HAND_BACK_LEAD_SECONDS = 0.25  # a handed-back task comes back this long before its turn (< BULK_HORIZON_SECONDS)


class RetryLater(Exception):
    """Run this task again after ``countdown`` seconds. ``failed``: this run met a retryable failure, and the copy
    counts one retry more (TASK_MAX_RETRIES, the record's ``attempts``); otherwise it only waits (another close of
    ours holds the conversation, or a bulk close waits for its turn at the rate limit) and keeps this run's count."""

    def __init__(self, countdown: float, reason: str, *, failed: bool = False) -> None:
        super().__init__(countdown, reason)
        self.countdown = countdown
        self.reason = reason
        self.failed = failed


class Waiting(Exception):
    """Not a failure, and not a finished close: the item waits in a batched check's set, and its outcome is recorded
    later (by the pump, or by a close task it sends). ``record`` is what its task reports meanwhile."""

    def __init__(self, record: dict[str, Any]) -> None:
        super().__init__(record)
        self.record = record


@dataclass
class TaskContext:
    task_id: str
    retries: int
    batch_id: str | None
    queue: str = QUEUE_INTERACTIVE


class CloseRunner:
    """Runs one close per ``run`` call; one per worker process, shared by its threads."""

    def __init__(self, settings: WorkerSettings, client: redis.Redis, closer: Closer, default_options: CloseOptions,
                 results: ResultStores, breaker: CircuitBreaker, *, clock: Callable[[], float] = time.time,
                 checks: CheckQueue | None = None, trust: FleetTrust | None = None,
                 feeder: BatchFeeder | None = None) -> None:
        self.trust = trust
        self.settings = settings
        self.feeder = feeder
        self.redis = client
        self.closer = closer
        self.default_options = default_options
        self.limits = OptionLimits.from_settings(settings)
        self.results = results
        self.breaker = breaker
        self.clock = clock
        self.checks = checks
        self.keys = results.batches.keys  # this runner's org: every key it touches is that org's
        self.org = self.keys.org
        self.guard = PatchGuard(client, claim_seconds(settings), keys=self.keys)
        self.progress = ItemProgress(client, keys=self.keys)

    def run(self, raw_id: object, context: TaskContext, overrides: dict[str, Any]) -> dict[str, Any]:
        """Run one close; returns the outcome record, or raises RetryLater or Waiting (a batched check's turn)."""
        started = self.clock()
        try:
            conversation_id = parse_conversation_id(raw_id)
            options = self.default_options.with_overrides(overrides, self.limits)
        except (InvalidConversationId, ValueError) as exc:
            return self._reject(raw_id, exc, context, started)
        context, item = self._verified_batch(conversation_id, context)
        if item is not None and item.origin == ORIGIN_SWEEP:
            options = options.for_sweep_candidate()
        if context.batch_id is None:
            self.results.pending.track(context.task_id, conversation_id, overrides, context.queue, only_if_absent=True)

        not_attempted = self._not_attempted_reason(context, item)
        if not_attempted is not None:
            outcome, reason = not_attempted
            return self._finish(CloseResult(conversation_id, outcome, started_at=started, finished_at=self.clock(),
                                            error=reason), context)

        # The lock outlives the task's hard time limit and is never re-entered: no second copy of a close (even one
        # with the same task id, redelivered) runs while the first still can. A copy takes it over from a run whose
        # process is provably gone (``inflight_lock``) instead of waiting for it to expire.
        lock = InflightLock(self.redis, self.keys.inflight(conversation_id), self.settings.inflight_lock_seconds)
        if not lock.acquire(context.task_id):
            raise RetryLater(2.0 + backoff_seconds(0, None, base_seconds=2.0), "another task is closing it")
        try:
            return self._close(conversation_id, options, context, item)
        finally:
            lock.release()

    # -- steps -------------------------------------------------------------------------------------------------
    def _reject(self, raw_id: object, exc: Exception, context: TaskContext, started: float) -> dict[str, Any]:
        """An invalid ID or a refused option: recorded, never attempted. It counts in its batch only when the
        message really is an item of that batch (a valid member ID); otherwise it is kept with the rejected ones."""
        shown = raw_id if isinstance(raw_id, str) else repr(raw_id)
        outcome = Outcome.INVALID_ID if isinstance(exc, InvalidConversationId) else Outcome.INVALID_REQUEST
        batch_id = None
        if outcome is Outcome.INVALID_REQUEST and isinstance(raw_id, str):
            batch_id = self._verified_batch(raw_id, context)[0].batch_id
        result = CloseResult(conversation_id=shown[:MAX_ECHO], outcome=outcome, api_calls=0,
                             attempts=context.retries + 1, started_at=started, finished_at=self.clock(),
                             error=str(exc)[:1000], batch_id=batch_id, org=self.org)
        self.results.rejected.add(result, context.task_id)
        self.results.pending.forget(context.task_id)
        if batch_id is not None and self.feeder is not None:
            self._feed(batch_id, result.conversation_id)
        log.warning("rejected close: %s", str(exc)[:1000], extra={"batch_id": batch_id})
        return result.as_dict()

    def _verified_batch(self, conversation_id: str, context: TaskContext) -> tuple[TaskContext, ItemView | None]:
        """The context with ``batch_id`` kept only when this conversation is an item of that batch (its members),
        and what the batch says of it (origin, state). A spoofed or malformed batch id makes the close standalone:
        the batch is untouched."""
        if context.batch_id is None:
            return context, None
        if is_batch_id(context.batch_id):
            item = self.results.batches.item_view(context.batch_id, conversation_id)
            if item.member:
                return context, item
        log.warning("batch id %s does not list this conversation: closing it standalone",
                    repr(context.batch_id)[:80], extra={"conversation_id": conversation_id})
        return replace(context, batch_id=None), None

    def _not_attempted_reason(self, context: TaskContext, item: ItemView | None) -> tuple[Outcome, str] | None:
        if item is not None:
            if item.state == "cancelled":
                return Outcome.CANCELLED, "batch cancelled before this item ran"
            if item.state == "stopped":
                return Outcome.NOT_ATTEMPTED, f"batch stopped ({item.reason})"
        breaker = self.breaker.open_reason()
        if breaker is not None:
            if context.batch_id:
                self.results.batches.stop(context.batch_id, breaker)
            return Outcome.NOT_ATTEMPTED, breaker
        return None

    def _close(self, conversation_id: str, options: CloseOptions, context: TaskContext,
               view: ItemView | None) -> dict[str, Any]:
        ref = ItemRef(context.batch_id, conversation_id)
        progress = self.progress.read(ref)
        if progress.patched:
            options = replace(options, previously_patched=True)
        item = Item(ref, progress, options)
        # The batched path (see ``batched_checks``); wrap-up codes need the conversation's participants, so those
        # closes take the direct path.
        batched = self.checks is not None and context.batch_id is not None and options.wrapup_code is None
        decision = next_step(item, TaskStarted(batched, sweep_item=view is not None and view.origin == ORIGIN_SWEEP))
        if isinstance(decision, Join) and self.checks is not None:
            self.checks.join([ref], decision.stage, self.clock() + decision.due_in_seconds,
                             task_id=context.task_id)
            raise self._waiting(ref, decision.stage)
        if isinstance(decision, Hand) and decision.stage is Stage.PATCH and self.checks is not None:
            return self._patch_for_batched_confirm(item.at(Stage.PATCH), context, self.checks)

        def remember_patch(_: str) -> None:
            self.progress.mark_patched(ref)

        confirm_only = progress.stage is Stage.DIRECT and progress.confirm_only
        if not confirm_only:
            self._fresh_look(conversation_id, context)
            ours_may_have_landed = progress.patched or self.results.outcomes.latest(conversation_id) is not None
            if options.skip_initial_get and ours_may_have_landed:
                options = replace(options, skip_initial_get=False)  # a PATCH of ours may have landed: read it first
        try:
            with lane(BULK if context.queue == QUEUE_BULK else INTERACTIVE):
                self._slot_or_hand_back(ref, context, claimed=not confirm_only and not progress.patched)
                if confirm_only:
                    since = 0.0 if progress.patched_at is None else self.clock() - progress.patched_at
                    result = self.closer.confirm_patched(conversation_id, options, patched=progress.patched,
                                                         since_patch_seconds=since)
                else:
                    result = self.closer.close(conversation_id, options, on_patched=remember_patch)
        except RetryableError as exc:
            result = self._exhausted_or_retry(ref, exc, context)
        else:
            result.api_calls += progress.api_calls
            if progress.stage is Stage.DIRECT and progress.live_read is not None:
                self._after_live_read(result, progress.live_read)
        return self._concluded(result, item, context)

    def _after_live_read(self, result: CloseResult, why: LiveRead) -> None:
        """A batch item the pump sent to a read of its conversation instead of trusting analytics: a pre-check row
        that looked ended while the read found the conversation open is a disagreement (the fleet then distrusts
        analytics confirmations for a while); the record says why a read confirmed it."""
        found_open = result.action is not None or result.outcome is Outcome.NOT_WEB_MESSAGING
        if why is LiveRead.LOOKED_ENDED and found_open and self.trust is not None:
            self.trust.disagreed(result.conversation_id, "pre-check")
        relabel = {LiveRead.DISTRUSTED: CONFIRMED_BY_READ_DISTRUSTED, LiveRead.DISAGREED: CONFIRMED_BY_READ_DISAGREED}
        if result.confirmed_by == CONFIRMED_BY_READ and why in relabel:
            result.confirmed_by = relabel[why]

    def _patch_for_batched_confirm(self, item: Item, context: TaskContext, checks: CheckQueue) -> dict[str, Any]:
        """The batched path's PATCH: its confirmation joins the confirm set (unless the close ended here)."""
        ref, progress = item.ref, item.progress
        self._fresh_look(ref.conversation_id, context)
        earlier = self.results.outcomes.latest(ref.conversation_id)
        if earlier is not None and earlier.outcome.succeeded and earlier.batch_id != ref.batch_id:
            decision = next_step(item, ClosedElsewhere())
            if isinstance(decision, Finish):
                # Closed (and confirmed) by another close of ours since the pre-check read: no second PATCH.
                now = self.clock()
                self.progress.forget(ref)
                return self._finish(CloseResult(ref.conversation_id, decision.outcome, api_calls=progress.api_calls,
                                                started_at=now, finished_at=now, confirmed_by=earlier.confirmed_by,
                                                participant_states=earlier.participant_states), context)

        def remember_patch(_: str) -> None:
            self.progress.mark_patched(ref, Stage.PATCH)  # before sending: a retry knows

        try:
            with lane(BULK if context.queue == QUEUE_BULK else INTERACTIVE):
                self._slot_or_hand_back(ref, context, claimed=not progress.patched)
                answer = self.closer.disconnect(ref.conversation_id, item.options, on_patched=remember_patch)
        except RetryableError as exc:
            result = self._exhausted_or_retry(ref, exc, context)
        else:
            if isinstance(answer, PatchSent):
                decision = next_step(item, PatchTaken(answer.patched, answer.answer_shows_end), checks.timing)
                if isinstance(decision, Join):
                    checks.join([ref], decision.stage, self.clock() + decision.due_in_seconds,
                                add_calls=answer.api_calls, patched=decision.patched,
                                answer_open=decision.answer_open, task_id=context.task_id)
                    raise self._waiting(ref, decision.stage)
                raise TypeError(f"a taken PATCH cannot lead to {decision!r}")
            result = answer
            result.api_calls += progress.api_calls
        return self._concluded(result, item, context)

    def _slot_or_hand_back(self, ref: ItemRef, context: TaskContext, *, claimed: bool) -> None:
        """Bulk work starts its calls only with a rate-limit slot near, held for its first call. Otherwise its task
        goes back to the broker until its turn in the org's line (``RateLimiter.reserve_in_line``): no call made, no
        failure counted. ``claimed``: this run took the PATCH claim (``_fresh_look``) and no PATCH of this item may
        be out, so the claim is let go meanwhile; a claim that covers a PATCH already sent is kept. So a bulk close
        never sleeps on its org's limiter while it holds a pool process that another org's work could use."""
        if context.queue != QUEUE_BULK:
            return
        turn = self.closer.hold_first_slot(context.task_id)
        if turn is None:
            return
        if claimed:
            self.guard.release(ref.conversation_id, ref.batch_id)
        metrics.HANDED_BACK.labels(self.org).inc()
        # Back a little before the turn (within the horizon, so it holds its slot and sleeps at most that long): a
        # task that came back exactly at its turn would miss the slot whenever the broker or a busy host delays it.
        countdown = min(max(turn - HAND_BACK_LEAD_SECONDS, 0.0) + HAND_BACK_JITTER_SECONDS * random.random(),
                        self.settings.task_max_countdown_seconds)
        log.debug("bulk close handed back for %.1f s: its org's rate limit has no slot near", countdown,
                  extra={"conversation_id": ref.conversation_id, "batch_id": ref.batch_id})
        raise RetryLater(countdown, "waiting for its turn at the rate limit")

    def _fresh_look(self, conversation_id: str, context: TaskContext) -> None:
        """The look after the in-flight lock, before any PATCH (see ``patch_guard``): claim the conversation's PATCH
        for this item, or wait (RetryLater, no API call) while another close of ours has one out and its outcome is
        not recorded yet. Once it is, this close sees it (the batched path's recorded-outcome check, the direct
        path's first read) and sends no second PATCH."""
        holder = self.guard.claim(conversation_id, context.batch_id)
        if holder is not None:
            raise RetryLater(2.0 + backoff_seconds(0, None, base_seconds=2.0),
                             f"another close of ours ({holder[:40]}) has a PATCH out for it")

    def _concluded(self, result: CloseResult, item: Item, context: TaskContext) -> dict[str, Any]:
        """A close that ran: its progress is forgotten, the breaker learns from it, its outcome is recorded."""
        decision = next_step(item, Concluded(result.outcome))
        if not isinstance(decision, Finish):
            raise TypeError(f"a concluded close cannot lead to {decision!r}")
        self.progress.forget(item.ref)
        self._update_breaker(result)
        return self._finish(result, context)

    def _waiting(self, ref: ItemRef, stage: Stage) -> Waiting:
        """What a task raises when its item waits for a batched check (its outcome is recorded later)."""
        log.debug("waiting for a batched %s", stage.value,
                  extra={"conversation_id": ref.conversation_id, "batch_id": ref.batch_id})
        return Waiting({"waiting_for": f"batched {stage.value}", "conversation_id": ref.conversation_id,
                        "batch_id": ref.batch_id, "org": self.org})

    def record_checked(self, result: CloseResult) -> dict[str, Any]:
        """Record an outcome a batched check decided (the pump's ``finish``)."""
        self._update_breaker(result)
        return self._finish(result, TaskContext(task_id="batched-check", retries=0, batch_id=result.batch_id,
                                                queue=QUEUE_BULK))

    def after_time_limit(self, raw_id: object, context: TaskContext) -> dict[str, Any]:
        """A run the worker's soft time limit stopped: retried like a transient failure, within TASK_MAX_RETRIES and
        TASK_RETRY_WINDOW_SECONDS, then it ends ``failed``. A close never loops without an outcome. Raises
        RetryLater or returns the outcome record."""
        try:
            conversation_id = parse_conversation_id(raw_id)
        except InvalidConversationId as exc:
            return self._reject(raw_id, exc, context, self.clock())
        context, _ = self._verified_batch(conversation_id, context)
        ref = ItemRef(context.batch_id, conversation_id)
        limit = self.settings.task_soft_time_limit_seconds
        stopped = RetryableError(f"run stopped by the soft time limit ({limit} s, TASK_SOFT_TIME_LIMIT_SECONDS)",
                                 code="soft_time_limit")
        result = self._exhausted_or_retry(ref, stopped, context)
        item = Item(ref, self.progress.read(ref), self.default_options)
        return self._concluded(result, item, context)

    def _exhausted_or_retry(self, ref: ItemRef, exc: RetryableError, context: TaskContext) -> CloseResult:
        """The failed result once retries are exhausted; otherwise raise RetryLater with a jittered countdown."""
        now = self.clock()
        conversation_id = ref.conversation_id
        total_calls, first_attempt_at = self.progress.count_retryable_failure(
            ref, float(getattr(exc, "api_calls", 0)), now)
        trying_for = now - first_attempt_at
        if context.retries >= self.settings.task_max_retries or trying_for >= self.settings.task_retry_window_seconds:
            return CloseResult(conversation_id, Outcome.FAILED, api_calls=total_calls, started_at=now,
                               finished_at=now, error=f"retries exhausted after {trying_for:.0f} s: {exc}",
                               error_code=exc.code, http_status=exc.status)
        countdown = min(backoff_seconds(context.retries, exc.retry_after_seconds,
                                        base_seconds=self.settings.retry_base_seconds,
                                        cap_seconds=self.settings.retry_cap_seconds),
                        self.settings.task_max_countdown_seconds)
        log.info("deferring close by %.1f s: %s", countdown, exc,
                 extra={"conversation_id": conversation_id, "batch_id": context.batch_id,
                        "correlation_id": exc.correlation_id})
        raise RetryLater(countdown, str(exc), failed=True) from None

    def _feed(self, batch_id: str, ended: str) -> None:
        """An item of a fed batch ended: it leaves the in-flight set and the batch's next item is fed. A failure here
        belongs to the feed, not to this close (its outcome is recorded): the recovery check feeds again."""
        assert self.feeder is not None
        try:
            self.feeder.refill(batch_id, [ended])
        except Exception:  # Redis or the broker: logged, the recovery check refills
            log.warning("feeding batch %s failed; the recovery check feeds it", batch_id, exc_info=True,
                        extra={"batch_id": batch_id})

    def _update_breaker(self, result: CloseResult) -> None:
        """The breaker counts only evidence that the OAuth client itself is refused (401 after a refresh, a 403 for a
        permission it lacks everywhere), never a 403 for one conversation's division: that ends its item alone."""
        if result.outcome is Outcome.FORBIDDEN and result.error_code in ITEM_ONLY_CODES:
            return
        if result.outcome is Outcome.FORBIDDEN:
            self.breaker.record_failure(result.error or "authorization failed")
        elif result.outcome in {Outcome.CLOSED, Outcome.ALREADY_CLOSED, Outcome.NOT_FOUND,
                                Outcome.NOT_WEB_MESSAGING}:
            self.breaker.record_success()

    def _finish(self, result: CloseResult, context: TaskContext) -> dict[str, Any]:
        result.attempts = context.retries + 1
        result.batch_id = context.batch_id
        result.org = self.org
        counted = self.results.outcomes.record(result)
        self.guard.release(result.conversation_id, context.batch_id)  # after the record: the next close sees it
        if context.batch_id is None:
            self.results.pending.forget(context.task_id)
        elif self.feeder is not None:
            self._feed(context.batch_id, result.conversation_id)
        metrics.CLOSES.labels(result.outcome.value, self.org).inc()
        if result.confirm_seconds is not None:
            metrics.CONFIRM_LATENCY.observe(result.confirm_seconds)
        log.info("close finished: %s", result.outcome.value,
                 extra={"conversation_id": result.conversation_id, "batch_id": context.batch_id,
                        "correlation_id": result.correlation_ids[-1] if result.correlation_ids else None,
                        "outcome": result.outcome.value, "api_calls": result.api_calls, "counted": counted})
        return result.as_dict()
