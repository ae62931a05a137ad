"""Wiring: settings in, a ready ``Closer`` (and a worker process's parts) out. The only place that turns settings
into the worker's objects.

A worker serves every org of its configuration (``config.orgs``): each org gets its own parts, built from its own
settings on its own Redis keys (token, limiter and its header feedback and pause, breaker, batched-check pump,
feeder, recovery, sweeps), so nothing one org's Genesys does reaches another's."""

from __future__ import annotations

import functools
import os
import time
from collections.abc import Callable
from dataclasses import dataclass, replace
from typing import Any

import redis
from celery import Celery

from genesys_closer.config.errors import CloserError, ConfigError
from genesys_closer.config.orgs import DEFAULT_ORG, check_org_name
from genesys_closer.config.redis_keys import client_digest, keys_for
from genesys_closer.config.settings import WorkerSettings, get_org_settings, get_worker_settings
from genesys_closer.shared.batches import BatchWriter
from genesys_closer.shared.feeder import FEED_BUDGET_SECONDS, BatchFeeder, pace_in_flight
from genesys_closer.shared.names import (
    CHECKS_TASK_NAME,
    FEED_TASK_NAME,
    QUEUE_INTERACTIVE,
    READINESS_TASK_NAME,
    SWEEP_TASK_NAME,
    TASK_NAME,
    org_kwargs,
)
from genesys_closer.shared.options import CloseOptions, OptionLimits
from genesys_closer.shared.outcomes import CloseResult, Outcome
from genesys_closer.shared.rate_limit import InMemoryRateLimiter, RateLimiter, RedisRateLimiter
from genesys_closer.shared.redis_connection import connect
from genesys_closer.shared.stores import ResultStores
from genesys_closer.shared.stores.batch_store import is_batch_id
from genesys_closer.worker.broker.message_bounds import CLOSE_BOUNDS, SWEEP_BOUNDS, Bounds
from genesys_closer.worker.checks.analytics_trust import ConfirmVerifier, FleetTrust
from genesys_closer.worker.checks.batched_checks import PUMP_BUDGET_SECONDS, CheckPump, CheckQueue
from genesys_closer.worker.checks.item_lifecycle import CheckTiming
from genesys_closer.worker.closing.closer import Closer, ConfirmSettings, RetrySettings
from genesys_closer.worker.genesys.client import GenesysClient, OAuthClient, Transport, TransportHooks
from genesys_closer.worker.genesys.tokens import InProcessTokenProvider, RedisTokenProvider, TokenProvider
from genesys_closer.worker.ops.task_events import OutcomeEvents
from genesys_closer.worker.recovery.redrive import Recovery
from genesys_closer.worker.running.breaker import CircuitBreaker
from genesys_closer.worker.running.close_run import CloseRunner
from genesys_closer.worker.sweeps.sweep_run import SweepRunner


class UnknownOrg(CloserError, ValueError):
    """A message or request named an org this deployment does not serve (or no valid org name at all)."""

    def __init__(self, org: object, known: list[str]) -> None:
        super().__init__(org)
        self.org = org
        self.known = known

    def __str__(self) -> str:
        return f"unknown org {repr(self.org)[:60]} (this deployment serves: {', '.join(self.known) or 'none'})"


@dataclass
class Service:
    """Everything a worker process needs to close conversations."""

    closer: Closer
    client: GenesysClient
    limiter: RateLimiter
    tokens: TokenProvider
    default_options: CloseOptions


def metric_hooks(org: str = DEFAULT_ORG) -> TransportHooks:
    from genesys_closer.worker.ops import metrics

    labelled = metrics.OrgMetrics(org)
    return TransportHooks(on_reply=labelled.on_reply, on_transport_error=labelled.on_transport_error,
                          on_limiter_wait=labelled.on_limiter_wait, on_pause=labelled.on_pause)


def build_service(settings: WorkerSettings, redis_client: redis.Redis | None = None,
                  hooks: TransportHooks | None = None, *, org: str = DEFAULT_ORG) -> Service:
    """Build the closer of one org. With ``redis_client`` the token and the rate limit are shared by the fleet
    (under the org's keys)."""
    from genesys_closer.worker.ops import metrics

    keys = keys_for(org)
    client_id, secret = settings.require_credentials()
    limiter: RateLimiter
    if redis_client is not None:
        limiter = RedisRateLimiter(redis_client, client_digest(client_id), settings.genesys_rate_limit_per_minute,
                                   settings.genesys_rate_limit_headroom, keys=keys, record_usage=True)
    else:
        limiter = InMemoryRateLimiter(settings.genesys_rate_limit_per_minute, settings.genesys_rate_limit_headroom)
    transport = Transport(
        limiter,
        connect_timeout_seconds=settings.genesys_connect_timeout_seconds,
        read_timeout_seconds=settings.genesys_read_timeout_seconds,
        default_pause_seconds=settings.genesys_default_cooldown_seconds,
        max_limiter_wait_seconds=settings.retry_inline_max_wait_seconds,
        hooks=hooks or metric_hooks(org),
    )
    oauth = OAuthClient(transport, settings.login_url, client_id, secret.get_secret_value())
    tokens: TokenProvider
    if redis_client is not None:
        tokens = RedisTokenProvider(redis_client, oauth.fetch_token, client_id, secret.get_secret_value(),
                                    margin_seconds=settings.genesys_token_expiry_margin_seconds,
                                    on_refresh=metrics.OrgMetrics(org).on_token_refresh, keys=keys)
    else:
        tokens = InProcessTokenProvider(oauth.fetch_token, settings.genesys_token_expiry_margin_seconds)
    client = GenesysClient(transport, settings.api_url, tokens)
    closer = Closer(
        client,
        retry=RetrySettings(settings.retry_max_attempts, settings.retry_base_seconds, settings.retry_cap_seconds,
                            settings.retry_inline_max_wait_seconds),
        confirm=ConfirmSettings(settings.confirm_timeout_seconds, settings.confirm_initial_delay_seconds,
                                settings.confirm_max_interval_seconds),
    )
    return Service(closer, client, limiter, tokens, CloseOptions.from_settings(settings))


@dataclass
class WorkerParts:
    """What one worker process uses for one org: one close, batch recovery, sweeps (built after fork, on first
    use)."""

    org: str
    settings: WorkerSettings
    service: Service
    close_runner: CloseRunner
    recovery: Recovery
    sweeps: SweepRunner
    feeder: BatchFeeder
    feed_budget_seconds: float
    checks: CheckPump | None = None


def build_worker_parts(settings: WorkerSettings, redis_client: redis.Redis, app: Celery,
                       clock: Callable[[], float] = time.time, *, org: str = DEFAULT_ORG) -> WorkerParts:
    """One org's parts: every key they touch is that org's (``keys_for(org)``), every task they send names it."""
    keys = keys_for(org)
    client_id, _ = settings.require_credentials()
    service = build_service(settings, redis_client, org=org)
    results = ResultStores.open(redis_client, settings.results_ttl_seconds, keys=keys, clock=clock)
    breaker = CircuitBreaker(redis_client, client_digest(client_id), settings.circuit_breaker_threshold,
                             settings.circuit_breaker_open_seconds, keys=keys)
    batches = BatchWriter(app, results, clock, lease_seconds=settings.batch_enqueue_lease_seconds,
                          in_flight=settings.batch_in_flight,
                          pace_in_flight=pace_in_flight(settings.genesys_rate_limit_per_minute))
    queue: CheckQueue | None = None
    if settings.batched_checks:
        def send_pump(countdown: float) -> None:
            app.send_task(CHECKS_TASK_NAME, kwargs=org_kwargs(org), countdown=countdown, queue=QUEUE_INTERACTIVE,
                          ignore_result=True)

        queue = CheckQueue(redis_client, CheckTiming.from_settings(settings), send_pump, clock, keys=keys)
    trust = FleetTrust(redis_client, settings.analytics_distrust_seconds, clock=clock, keys=keys)
    runner = CloseRunner(settings, redis_client, service.closer, service.default_options, results, breaker,
                         clock=clock, checks=queue, trust=trust, feeder=batches.feeder)
    verifier = ConfirmVerifier(trust, service.client, service.closer.retrying, settings.analytics_verify_share)
    # A pump run stops at half the soft time limit: the limit's exception must never land inside a Redis call.
    pump = None if queue is None else CheckPump(queue, service.client, service.closer.retrying, batches,
                                                runner.record_checked, service.default_options,
                                                OptionLimits.from_settings(settings),
                                                budget_seconds=min(PUMP_BUDGET_SECONDS,
                                                                   settings.task_soft_time_limit_seconds / 2),
                                                verifier=verifier,
                                                report_ended=OutcomeEvents(app) if settings.batched_outcome_events
                                                else None)
    return WorkerParts(
        org=org,
        settings=settings,
        service=service,
        close_runner=runner,
        checks=pump,
        recovery=Recovery(redis_client, results, batches, settings.batch_stall_seconds, checks=queue),
        feeder=batches.feeder,
        feed_budget_seconds=min(FEED_BUDGET_SECONDS, settings.task_soft_time_limit_seconds / 2),
        sweeps=SweepRunner(redis_client, service.client, service.closer.retrying, results, batches,
                           settings.sweep_time_limit_seconds + 60, clock=clock,
                           paging_cap=settings.sweep_paging_cap),
    )


def message_limits(task_name: str) -> Bounds:
    """The bounds every message of ``task_name`` must keep (see ``message_bounds``)."""
    if task_name in (TASK_NAME, SWEEP_TASK_NAME):
        settings = get_worker_settings()
        return replace(CLOSE_BOUNDS if task_name == TASK_NAME else SWEEP_BOUNDS,
                       max_eta_seconds=float(settings.max_countdown_seconds), max_retries=settings.task_max_retries)
    if task_name in (CHECKS_TASK_NAME, FEED_TASK_NAME, READINESS_TASK_NAME):
        return Bounds(max_args=0, max_kwargs=1, max_kwarg_name=8)  # ``org`` only (checked by the task)
    return Bounds(max_args=0, max_kwargs=0)


@functools.cache
def _redis_for(pid: int) -> redis.Redis:
    return connect(get_worker_settings().redis_target)


def process_redis() -> redis.Redis:
    """This process's Redis client, shared by every org's parts."""
    return _redis_for(os.getpid())


@functools.cache
def _results_for(pid: int, org: str = DEFAULT_ORG) -> ResultStores:
    return ResultStores.open(_redis_for(pid), get_worker_settings().results_ttl_seconds, keys=keys_for(org))


def message_org(kwargs: object) -> str:
    """The org a message's keyword arguments name, as a valid org name (``default`` when absent or not a valid
    name: such a message is refused, and its record kept with the default org's)."""
    raw = kwargs.get("org") if isinstance(kwargs, dict) else None
    try:
        return check_org_name(raw)
    except ValueError:
        return DEFAULT_ORG


def record_rejected(task_name: str, task_id: str, payload: object, problem: str,
                    outcome: Outcome = Outcome.INVALID_REQUEST, app: Celery | None = None) -> dict[str, Any]:
    """Record a refused message (in the consumer process, or a task whose org this deployment does not serve);
    returns the record. ``outcome`` is ``not_attempted`` for a close that expired before it ran; it counts in its
    batch (kept with the org the message names) when it is an item, and the batch's next item is fed. A message
    naming an org the workers do not serve creates no state of that org: unless it is an item of a batch a producer
    made there, it is kept with the default org's rejected messages. With ``app``, the record is also the task's
    result (the sender's ``.get()`` returns it)."""
    shown, batch_id, org = f"<{task_name} message>", None, DEFAULT_ORG
    args: object = None
    kwargs: object = None
    if isinstance(payload, list | tuple) and len(payload) == 3:
        args, kwargs = payload[0], payload[1]
        org = message_org(kwargs)
    results = _results_for(os.getpid(), org)
    if isinstance(args, list | tuple) and args and isinstance(args[0], str):
        shown = args[0][:100]
    raw_batch = kwargs.get("batch_id") if isinstance(kwargs, dict) else None
    if is_batch_id(raw_batch) and results.batches.item_view(str(raw_batch), shown).member:
        batch_id = str(raw_batch)
    now = time.time()
    reason = f"message refused: {problem}" if outcome is Outcome.INVALID_REQUEST else problem
    record = CloseResult(shown, outcome, attempts=0, started_at=now, finished_at=now, error=reason[:1000],
                         batch_id=batch_id, org=org)
    kept = results if batch_id is not None or _serves(org) else _results_for(os.getpid(), DEFAULT_ORG)
    kept.rejected.add(record, task_id)
    if batch_id is None:
        results.pending.forget(task_id)  # a tracked standalone close that expired on a retry is not re-sent
    else:  # its slot in flight is free: no worker of an unknown org would ever feed the batch's next items
        _writer_for(os.getpid(), org).feeder.refill(batch_id, [shown])
    if task_id and app is not None:
        app.backend.store_result(task_id, record.as_dict(), "SUCCESS")  # the sender's .get() has its outcome
    return record.as_dict()


def _serves(org: str) -> bool:
    try:
        return org in get_org_settings()
    except ConfigError:
        return False


@functools.cache
def _writer_for(pid: int, org: str) -> BatchWriter:
    from genesys_closer.worker.app import app

    settings = get_worker_settings()
    return BatchWriter(app, _results_for(pid, org), time.time, lease_seconds=settings.batch_enqueue_lease_seconds,
                       in_flight=settings.batch_in_flight)


@functools.cache
def _parts_for(pid: int, org: str) -> WorkerParts:
    from genesys_closer.worker.app import app

    return build_worker_parts(get_org_settings()[org], _redis_for(pid), app, org=org)


def org_names() -> list[str]:
    """The orgs this deployment serves (``default`` first when it is one of them)."""
    return list(get_org_settings())


def worker_parts(org: object = None) -> WorkerParts:
    """One org's parts in this worker process (built after fork, on first use). ``org`` comes from a message:
    None is ``default``; anything not a configured org's name raises UnknownOrg, before any Genesys call."""
    try:
        name = check_org_name(org)
    except ValueError:
        raise UnknownOrg(org, org_names()) from None
    if name not in get_org_settings():
        raise UnknownOrg(name, org_names())
    return _parts_for(os.getpid(), name)


def every_org_parts() -> list[WorkerParts]:
    """The parts of every org this deployment serves (the recovery check runs for each)."""
    return [worker_parts(org) for org in org_names()]
