"""Celery settings shared by producers and workers, derived from the settings objects.

Producers get the broker half (``producer_config``): enough to publish to the right queues and read results.
Workers get everything (``worker_config``): JSON only, late acks, requeue when a worker is lost, prefetch 1, time
limits, a visibility timeout above every time limit plus the longest countdown, events for Flower, and three
queues served in priority order: ``interactive`` (single closes), ``celery`` (the default queue, for apps that
``send_task`` without naming a queue) and ``bulk`` (batches). All queues share one fleet-wide rate limit.
"""

from __future__ import annotations

from typing import Any

from celery import Celery
from kombu import Exchange, Queue  # type: ignore[attr-defined]

from genesys_closer.config.orgs import DEFAULT_ORG
from genesys_closer.config.redis_target import RedisTarget
from genesys_closer.config.settings import ProducerSettings, WorkerSettings
from genesys_closer.shared.names import (
    CHECKS_TASK_NAME,
    FEED_TASK_NAME,
    QUEUE_DEFAULT,
    QUEUE_INTERACTIVE,
    QUEUES,
    REDRIVE_TASK_NAME,
    SWEEP_TASK_NAME,
    TASK_NAME,
    org_kwargs,
)
from genesys_closer.shared.redis_connection import sentinel_options

APP_NAME = "genesys_closer"


def celery_redis_url(target: RedisTarget) -> str:
    """The broker and result-backend URL: ``REDIS_URL``, or with Sentinel one ``sentinel://`` URL per sentinel joined
    by ``;`` (the form kombu's sentinel transport and Celery's sentinel backend read), each carrying the master's
    password and database from ``REDIS_URL``."""
    if not target.uses_sentinel:
        return target.url
    auth = f"{target.userinfo}@" if target.userinfo else ""
    return ";".join(f"sentinel://{auth}{f'[{host}]' if ':' in host else host}:{port}/{target.database}"
                    for host, port in target.sentinels)


def celery_sentinel_options(target: RedisTarget) -> dict[str, Any]:
    """What kombu and Celery need beyond the URL to find the master: its name, and how to reach the sentinels."""
    if not target.uses_sentinel:
        return {}
    return {"master_name": target.master, "sentinel_kwargs": sentinel_options(target)}


def producer_config(settings: ProducerSettings) -> dict[str, Any]:
    """What a producer needs: the broker, its transport options, JSON, the queues and the task routes."""
    transport_options = {
        "visibility_timeout": settings.broker_visibility_timeout_seconds,
        "queue_order_strategy": "priority",
        "unacked_restore_interval": settings.broker_restore_interval_seconds,
        "unacked_restore_throttle": 1,
        # kombu's restore sweep holds this lock for milliseconds; its default 300 s TTL would, after a Redis restart
        # with the lock persisted in the AOF, block every restore of a lost worker's messages for five minutes.
        "unacked_mutex_expire": 15,
        "health_check_interval": 10,
        "socket_timeout": 30,
        "socket_connect_timeout": 10,
        "socket_keepalive": True,
    }
    target = settings.redis_target
    return {
        "broker_url": celery_redis_url(target),
        "result_backend": celery_redis_url(target),
        "broker_transport_options": transport_options | celery_sentinel_options(target),
        "result_backend_transport_options": {"health_check_interval": 10, "socket_keepalive": True}
                                            | celery_sentinel_options(target),
        "broker_connection_retry_on_startup": True,
        "task_serializer": "json",
        "result_serializer": "json",
        "accept_content": ["json"],
        "result_accept_content": ["json"],
        "result_expires": settings.results_ttl_seconds,
        "task_default_queue": QUEUE_DEFAULT,
        "task_queues": [Queue(name, Exchange(name, type="direct"), routing_key=name)  # type: ignore[no-untyped-call]
                        for name in QUEUES],
        "task_routes": {TASK_NAME: {"queue": QUEUE_INTERACTIVE}, SWEEP_TASK_NAME: {"queue": QUEUE_DEFAULT},
                        REDRIVE_TASK_NAME: {"queue": QUEUE_INTERACTIVE},
                        CHECKS_TASK_NAME: {"queue": QUEUE_INTERACTIVE}, FEED_TASK_NAME: {"queue": QUEUE_INTERACTIVE}},
        "task_send_sent_event": True,
        "enable_utc": True,
    }


def worker_config(settings: WorkerSettings, orgs: dict[str, WorkerSettings] | None = None) -> dict[str, Any]:
    """Every Celery setting a worker (and beat) uses; ``orgs``: every org served (for their sweep schedules)."""
    sweep_limit = settings.sweep_time_limit_seconds
    return producer_config(settings) | {
        "broker_connection_max_retries": None,
        "worker_cancel_long_running_tasks_on_connection_loss": True,
        "task_acks_late": True,
        "task_reject_on_worker_lost": True,
        "task_acks_on_failure_or_timeout": True,
        "worker_prefetch_multiplier": 1,
        "worker_concurrency": settings.worker_concurrency,
        "task_time_limit": settings.task_time_limit_seconds,
        "task_soft_time_limit": settings.task_soft_time_limit_seconds,
        "task_annotations": {SWEEP_TASK_NAME: {"soft_time_limit": sweep_limit, "time_limit": sweep_limit + 60}},
        "task_track_started": True,
        "worker_send_task_events": True,
        "beat_schedule": beat_schedule(settings, orgs),
        "worker_hijack_root_logger": False,
        "worker_direct": True,
    }


def beat_schedule(settings: WorkerSettings,
                  orgs: dict[str, WorkerSettings] | None = None) -> dict[str, dict[str, object]]:
    """The recovery check (always: Redis restarts, stalled batches, lost closes; it covers every org), and each
    org's idle sweep when its schedule is set (``SWEEP_SCHEDULE_SECONDS`` for ``default``, ``sweep.schedule_seconds``
    in the orgs file), with that org's filters."""
    interval = settings.recovery_check_seconds
    schedule: dict[str, dict[str, object]] = {
        "redrive-stalled-batches": {"task": REDRIVE_TASK_NAME, "schedule": interval,
                                    "options": {"expires": interval}},
    }
    for org, org_settings in (orgs if orgs is not None else {DEFAULT_ORG: settings}).items():
        if not org_settings.sweep_schedule_seconds:
            continue
        every = float(org_settings.sweep_schedule_seconds)
        schedule["idle-sweep" if org == DEFAULT_ORG else f"idle-sweep:{org}"] = {
            "task": SWEEP_TASK_NAME,
            "schedule": every,
            "kwargs": {"filters": org_settings.sweep_filters(), "scheduled": True, **org_kwargs(org)},
            "options": {"expires": every},
        }
    return schedule


def producer_app(settings: ProducerSettings) -> Celery:
    """A Celery app that only publishes and reads results: no tasks, no worker dependencies."""
    app = Celery(APP_NAME, set_as_current=False)
    app.conf.update(producer_config(settings))
    return app

