"""What a worker process does around one close: the decisions the Celery task must not hold itself.

Per task run: reject a bad ID (outcome ``invalid_id``, no request), honour a cancelled or stopped batch, respect
the circuit breaker, take the per-conversation in-flight lock (duplicates close once), run the closer, and then
either record the outcome (exactly once per batch item) or ask the task to retry later with a countdown.
"""

from __future__ import annotations

import functools
import json
import logging
import os
import time
from dataclasses import dataclass
from typing import Any

import redis

from config.settings import Settings, get_settings
from worker import metrics
from worker.breaker import CircuitBreaker
from worker.closer import CloseOptions
from worker.errors import InvalidConversationId, RetryableError
from worker.factory import Service, bucket_name, build_service
from worker.ids import parse_conversation_id
from worker.outcomes import CloseResult, Outcome
from worker.policy import backoff_seconds
from worker.redis_client import connect, text
from worker.results import ResultStore
from worker.sweep import SweepFilters, run_sweep

log = logging.getLogger("genesys_closer.worker")
PREFIX = "genesys-closer"
PROGRESS_TTL_SECONDS = 86_400
MAX_ID_ECHO = 100
_RELEASE = "if redis.call('GET', KEYS[1]) == ARGV[1] then return redis.call('DEL', KEYS[1]) end return 0"


class RetryLater(Exception):
    """Not a failure: run this task again after ``countdown`` seconds."""

    def __init__(self, countdown: float, reason: str) -> None:
        super().__init__(countdown, reason)
        self.countdown = countdown
        self.reason = reason


@dataclass
class TaskContext:
    task_id: str
    retries: int
    batch_id: str | None


class WorkerRuntime:
    def __init__(self, settings: Settings, client: redis.Redis, service: Service | None = None) -> None:
        self.settings = settings
        self.redis = client
        self.service = service or build_service(settings, client)
        client_id, _ = settings.require_credentials()
        self.results = ResultStore(client, settings.results_ttl_seconds)
        self.breaker = CircuitBreaker(client, bucket_name(client_id), settings.circuit_breaker_threshold,
                                      settings.circuit_breaker_open_seconds)
        self._release = client.register_script(_RELEASE)

    # -- entry point -------------------------------------------------------------------------------------------
    def close(self, raw_id: object, context: TaskContext, overrides: dict[str, Any]) -> dict[str, Any]:
        """Run one close; returns the outcome record or raises RetryLater."""
        started = time.time()
        try:
            conversation_id = parse_conversation_id(raw_id)
            options = self.service.default_options.with_overrides(overrides)
        except (InvalidConversationId, ValueError) as exc:
            shown = raw_id if isinstance(raw_id, str) else repr(raw_id)
            outcome = Outcome.INVALID_ID if isinstance(exc, InvalidConversationId) else Outcome.FAILED  # bad options
            result = CloseResult(conversation_id=shown[:MAX_ID_ECHO], outcome=outcome, api_calls=0,
                                 attempts=context.retries + 1, started_at=started, finished_at=time.time(),
                                 error=str(exc), batch_id=context.batch_id)
            self.results.record(result, item_key=f"invalid:{context.task_id}")
            log.warning("rejected close: %s", exc, extra={"batch_id": context.batch_id})
            return result.as_dict()

        not_attempted = self._not_attempted_reason(context)
        if not_attempted is not None:
            outcome, reason = not_attempted
            return self._finish(CloseResult(conversation_id, outcome, started_at=started, finished_at=time.time(),
                                            error=reason), context)

        lock_key = f"{PREFIX}:inflight:{conversation_id}"
        if not self._lock(lock_key, context.task_id):
            raise RetryLater(2.0 + backoff_seconds(0, None, base_seconds=2.0), "another task is closing it")
        try:
            return self._run(conversation_id, options, context)
        finally:
            self._release(keys=[lock_key], args=[context.task_id])

    # -- steps -------------------------------------------------------------------------------------------------
    def _not_attempted_reason(self, context: TaskContext) -> tuple[Outcome, str] | None:
        if context.batch_id:
            state, reason = self.results.batch_state(context.batch_id)
            if state == "cancelled":
                return Outcome.CANCELLED, "batch cancelled before this item ran"
            if state == "stopped":
                return Outcome.FORBIDDEN, f"not attempted: batch stopped ({reason})"
        breaker = self.breaker.open_reason()
        if breaker is not None:
            if context.batch_id:
                self.results.set_state(context.batch_id, "stopped", breaker)
            return Outcome.FORBIDDEN, f"not attempted: {breaker}"
        return None

    def _lock(self, key: str, task_id: str) -> bool:
        if self.redis.set(key, task_id, nx=True, ex=self.settings.inflight_lock_seconds):
            return True
        holder = self.redis.get(key)
        if holder is not None and text(holder) == task_id:  # the same task redelivered: take over
            self.redis.expire(key, self.settings.inflight_lock_seconds)
            return True
        return False

    def _run(self, conversation_id: str, options: CloseOptions, context: TaskContext) -> dict[str, Any]:
        progress_key = f"{PREFIX}:progress:{context.task_id}"
        previously_patched = self.redis.hget(progress_key, "patched") is not None

        def remember_patch(_: str) -> None:
            self.redis.hset(progress_key, "patched", "1")
            self.redis.expire(progress_key, PROGRESS_TTL_SECONDS)

        if previously_patched:
            options = CloseOptions(**{**options.__dict__, "previously_patched": True})
        try:
            result = self.service.closer.close(conversation_id, options, on_patched=remember_patch)
        except RetryableError as exc:
            calls = int(getattr(exc, "api_calls", 0))
            pipe = self.redis.pipeline(transaction=False)
            pipe.hincrby(progress_key, "api_calls", calls)
            pipe.hsetnx(progress_key, "first_attempt_at", repr(time.time()))
            pipe.hget(progress_key, "first_attempt_at")
            pipe.expire(progress_key, PROGRESS_TTL_SECONDS)
            total_calls, _, first_attempt_at, _ = pipe.execute()
            trying_for = time.time() - float(text(first_attempt_at))
            if (context.retries >= self.settings.task_max_retries
                    or trying_for >= self.settings.task_retry_window_seconds):
                result = CloseResult(conversation_id, Outcome.FAILED,
                                     error=f"retries exhausted after {trying_for:.0f} s: {exc}",
                                     error_code=exc.code, http_status=exc.status, api_calls=int(total_calls),
                                     started_at=time.time(), finished_at=time.time())
            else:
                countdown = min(backoff_seconds(context.retries, exc.retry_after_seconds,
                                                base_seconds=self.settings.retry_base_seconds,
                                                cap_seconds=self.settings.retry_cap_seconds),
                                self.settings.task_max_countdown_seconds)
                log.info("deferring close by %.1f s: %s", countdown, exc,
                         extra={"conversation_id": conversation_id, "batch_id": context.batch_id,
                                "correlation_id": exc.correlation_id})
                raise RetryLater(countdown, str(exc)) from None
        else:
            earlier_calls = self.redis.hget(progress_key, "api_calls")
            result.api_calls += int(text(earlier_calls)) if earlier_calls is not None else 0
        self.redis.delete(progress_key)
        self._update_breaker(result)
        return self._finish(result, context)

    def _update_breaker(self, result: CloseResult) -> None:
        if result.outcome is Outcome.FORBIDDEN:
            self.breaker.record_failure(result.error or "authorization failed")
        elif result.outcome in {Outcome.CLOSED, Outcome.ALREADY_CLOSED, Outcome.NOT_FOUND,
                                Outcome.NOT_WEB_MESSAGING}:
            self.breaker.record_success()

    def _finish(self, result: CloseResult, context: TaskContext) -> dict[str, Any]:
        result.attempts = context.retries + 1
        result.batch_id = context.batch_id
        counted = self.results.record(result)
        metrics.CLOSES.labels(result.outcome.value).inc()
        if result.confirm_seconds is not None:
            metrics.CONFIRM_LATENCY.observe(result.confirm_seconds)
        log.info("close finished: %s", result.outcome.value,
                 extra={"conversation_id": result.conversation_id, "batch_id": context.batch_id,
                        "correlation_id": result.correlation_ids[-1] if result.correlation_ids else None,
                        "outcome": result.outcome.value, "api_calls": result.api_calls, "counted": counted})
        return result.as_dict()


    # -- batch recovery ----------------------------------------------------------------------------------------
    def redrive_stalled_batches(self) -> dict[str, int]:
        from producer.api import CloseClient
        from worker.app import app as celery_app

        lock_key = f"{PREFIX}:redrive-lock"
        if not self.redis.set(lock_key, "1", nx=True, ex=60):
            return {}
        redriven: dict[str, int] = {}
        try:
            for batch_id in self.results.stalled_batches(self.settings.batch_stall_seconds):
                options, queue = self.results.batch_fields(batch_id, "options", "queue")
                missing = list(self.results.missing_items(batch_id))
                count = CloseClient(self.settings, app=celery_app).publish_items(
                    batch_id, missing, json.loads(options or "{}"), queue or "bulk")
                self.results.mark_redriven(batch_id, count)
                redriven[batch_id] = count
                log.warning("batch stalled for %d s: re-queued %d item(s) without an outcome",
                            self.settings.batch_stall_seconds, count, extra={"batch_id": batch_id})
        finally:
            self.redis.delete(lock_key)
        return redriven

    # -- sweeps ------------------------------------------------------------------------------------------------
    def sweep(self, sweep_id: str, filters: dict[str, Any], *, dry_run: bool, options: dict[str, Any],
              scheduled: bool) -> dict[str, Any]:
        """Run one sweep (at most one at a time in the fleet); record its candidates; start its batch."""
        from producer.api import CloseClient  # the producer's batch machinery, on this worker's app

        lock_key = f"{PREFIX}:sweep-lock"
        summary: dict[str, Any] = {"sweep_id": sweep_id, "dry_run": dry_run, "scheduled": scheduled}
        try:
            parsed = SweepFilters.from_dict(filters)
            overrides = {**options, "skip_initial_get": True}
            CloseOptions().with_overrides(overrides)
        except (ValueError, InvalidConversationId) as exc:
            return {**summary, "error": f"invalid sweep: {exc}"}
        if not self.redis.set(lock_key, sweep_id, nx=True, ex=self.settings.sweep_time_limit_seconds + 60):
            return {**summary, "skipped": "another sweep is running"}
        try:
            report = run_sweep(self.service.client, parsed, retrying=self.service.closer.retrying)
            key = f"{PREFIX}:sweep:{sweep_id}"
            pipe = self.redis.pipeline(transaction=False)
            for candidate in report.candidates:
                pipe.rpush(f"{key}:candidates", candidate.as_json())
            pipe.expire(f"{key}:candidates", self.settings.results_ttl_seconds)
            pipe.execute()
            summary.update({"filters": parsed.as_dict(), "candidates": len(report.candidates),
                            "chosen": len(report.chosen), "pages": report.pages, "intervals": report.intervals,
                            "duplicates_dropped": report.duplicates_dropped, "api_calls": report.api_calls,
                            "batch_id": None})
            if report.chosen and not dry_run:
                from worker.app import app as celery_app

                batch = CloseClient(self.settings, app=celery_app).close_many(
                    report.chosen, label="scheduled sweep" if scheduled else "sweep",
                    source=json.dumps(parsed.as_dict(), separators=(",", ":")), options=overrides)
                summary["batch_id"] = batch.id
            self.redis.set(key, json.dumps(summary), ex=self.settings.results_ttl_seconds)
            log.info("sweep finished: %d candidates, %d chosen", summary["candidates"], summary["chosen"],
                     extra={"batch_id": summary["batch_id"]})
            return summary
        finally:
            self._release(keys=[lock_key], args=[sweep_id])


@functools.cache
def _runtime_for(pid: int) -> WorkerRuntime:
    settings = get_settings()
    return WorkerRuntime(settings, connect(settings.redis_url))


def get_runtime() -> WorkerRuntime:
    """The runtime of this process (built after fork, on first use)."""
    return _runtime_for(os.getpid())
