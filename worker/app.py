"""The Celery app: ``celery -A worker.app worker`` starts a worker.

Configured from the settings: JSON only, late acks, requeue when a worker is lost, prefetch 1, time limits, a
visibility timeout above every time limit plus the longest countdown, task and sent events for Flower, and three
queues served in priority order: ``interactive`` (single closes), ``celery`` (the default queue, for apps that
``send_task`` without naming a queue) and ``bulk`` (batches). All queues share one fleet-wide rate limit.
"""

from __future__ import annotations

import logging
import os
import sys
import tempfile
from typing import Any

from celery import Celery
from celery.signals import setup_logging, worker_process_shutdown, worker_ready
from kombu import Exchange, Queue  # type: ignore[attr-defined]

from config.settings import Settings, get_settings
from worker.logging_setup import configure_logging

TASK_NAME = "worker.tasks.close_conversation"
SWEEP_TASK_NAME = "worker.tasks.sweep"
PROBE_TASK_NAME = "worker.tasks.health_probe"
REDRIVE_TASK_NAME = "worker.tasks.redrive_stalled_batches"
QUEUE_INTERACTIVE = "interactive"
QUEUE_DEFAULT = "celery"
QUEUE_BULK = "bulk"


def celery_config(settings: Settings) -> dict[str, object]:
    """Every Celery setting genesys-closer uses, derived from ``settings``."""
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
    return {
        "broker_url": settings.redis_url,
        "result_backend": settings.redis_url,
        "broker_transport_options": transport_options,
        "result_backend_transport_options": {"health_check_interval": 10, "socket_keepalive": True},
        "broker_connection_retry_on_startup": True,
        "broker_connection_max_retries": None,
        "worker_cancel_long_running_tasks_on_connection_loss": True,
        "task_serializer": "json",
        "result_serializer": "json",
        "accept_content": ["json"],
        "result_accept_content": ["json"],
        "result_expires": settings.results_ttl_seconds,
        "task_acks_late": True,
        "task_reject_on_worker_lost": True,
        "task_acks_on_failure_or_timeout": True,
        "worker_prefetch_multiplier": 1,
        "worker_concurrency": settings.worker_concurrency,
        "task_time_limit": settings.task_time_limit_seconds,
        "task_soft_time_limit": settings.task_soft_time_limit_seconds,
        "task_track_started": True,
        "task_send_sent_event": True,
        "worker_send_task_events": True,
        "task_default_queue": QUEUE_DEFAULT,
        "task_queues": [Queue(name, Exchange(name, type="direct"), routing_key=name)  # type: ignore[no-untyped-call]
                        for name in (QUEUE_INTERACTIVE, QUEUE_DEFAULT, QUEUE_BULK)],
        "task_routes": {TASK_NAME: {"queue": QUEUE_INTERACTIVE}, SWEEP_TASK_NAME: {"queue": QUEUE_DEFAULT},
                        REDRIVE_TASK_NAME: {"queue": QUEUE_INTERACTIVE}},
        "beat_schedule": beat_schedule(settings),
        "worker_hijack_root_logger": False,
        "worker_direct": True,
        "enable_utc": True,
    }


def beat_schedule(settings: Settings) -> dict[str, dict[str, object]]:
    """Re-driving stalled batches (always), and the idle sweep when SWEEP_SCHEDULE_SECONDS is set."""
    interval = max(10.0, settings.batch_stall_seconds / 5)
    schedule: dict[str, dict[str, object]] = {
        "redrive-stalled-batches": {"task": REDRIVE_TASK_NAME, "schedule": interval,
                                    "options": {"expires": interval}},
    }
    if not settings.sweep_schedule_seconds:
        return schedule
    return schedule | {
        "idle-sweep": {
            "task": SWEEP_TASK_NAME,
            "schedule": float(settings.sweep_schedule_seconds),
            "kwargs": {"filters": settings.sweep_filters(), "scheduled": True},
            "options": {"expires": float(settings.sweep_schedule_seconds)},
        }
    }


def create_app(settings: Settings) -> Celery:
    app = Celery("genesys_closer", include=["worker.tasks"])
    app.conf.update(celery_config(settings))
    return app


def _prepare_metrics_dir(settings: Settings) -> None:
    """Multiprocess metrics need a shared directory before prometheus_client is first imported."""
    if settings.metrics_port and not os.environ.get("PROMETHEUS_MULTIPROC_DIR"):
        os.environ["PROMETHEUS_MULTIPROC_DIR"] = tempfile.mkdtemp(prefix="genesys-closer-metrics-")
        values = sys.modules.get("prometheus_client.values")
        if values is not None:  # imported early (Flower's celery plugin does): pick the multiprocess values now
            values.ValueClass = values.get_value_class()  # type: ignore[attr-defined]


_prepare_metrics_dir(get_settings())
app = create_app(get_settings())


@worker_ready.connect  # type: ignore[untyped-decorator]
def _serve_metrics(**_: Any) -> None:
    settings = get_settings()
    if settings.metrics_port:
        from worker import metrics

        metrics.serve(settings.metrics_port)


@worker_process_shutdown.connect  # type: ignore[untyped-decorator]
def _metrics_process_exited(pid: int | None = None, **_: Any) -> None:
    if get_settings().metrics_port:
        from worker import metrics

        metrics.process_exited(pid or os.getpid())


@setup_logging.connect  # type: ignore[untyped-decorator]
def _configure_logging(loglevel: Any = None, **_: Any) -> None:
    """Celery's own logging setup is replaced by ours (redacting, optional JSON)."""
    settings = get_settings()
    secret = settings.genesys_client_secret.get_secret_value() if settings.genesys_client_secret else ""
    level = loglevel if isinstance(loglevel, str) else logging.getLevelName(loglevel or settings.log_level)
    configure_logging(str(level), settings.log_format, [secret])
