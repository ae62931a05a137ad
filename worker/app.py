"""The worker's Celery app: ``celery -A genesys_closer.worker.app worker`` starts a worker.

Importing this module builds nothing: the app is created on first access of ``app`` and reads the worker settings
only when Celery first needs its configuration. A worker with invalid settings or without Genesys credentials
refuses to start with one line naming the variable (exit status 78, EX_CONFIG).
"""

from __future__ import annotations

import functools
import logging
import os
import sys
import tempfile
from typing import Any, NoReturn

from celery import Celery
from celery.signals import celeryd_after_setup, setup_logging, worker_init, worker_process_shutdown, worker_ready
from celery.utils.nodenames import worker_direct

from genesys_closer.config.errors import ConfigError
from genesys_closer.config.settings import WorkerSettings, get_org_settings, get_worker_settings, load_org_settings
from genesys_closer.shared.celery_config import APP_NAME, worker_config
from genesys_closer.shared.logging_setup import configure_logging
from genesys_closer.worker.broker import channel_client, reconnect_fixes
from genesys_closer.worker.running import pool_forks, traceback_copies

EXIT_CONFIG = 78  # sysexits.h EX_CONFIG
TASKS_MODULE = "genesys_closer.worker.tasks"


def _refuse_to_start(error: ConfigError) -> NoReturn:
    print(f"genesys-closer worker: {error}", file=sys.stderr, flush=True)
    raise SystemExit(EXIT_CONFIG)


def _settings() -> WorkerSettings:
    try:
        return get_worker_settings()
    except ConfigError as exc:
        _refuse_to_start(exc)


def _orgs() -> dict[str, WorkerSettings]:
    try:
        return get_org_settings()
    except ConfigError as exc:
        _refuse_to_start(exc)


def _prepare_metrics_dir(settings: WorkerSettings) -> None:
    """Multiprocess metrics need a shared directory before prometheus_client is first imported."""
    if settings.metrics_port and not os.environ.get("PROMETHEUS_MULTIPROC_DIR"):
        os.environ["PROMETHEUS_MULTIPROC_DIR"] = tempfile.mkdtemp(prefix="genesys-closer-metrics-")
        values = sys.modules.get("prometheus_client.values")
        if values is not None:  # imported early (Flower's celery plugin does): pick the multiprocess values now
            values.ValueClass = values.get_value_class()  # type: ignore[attr-defined]


CONSUMER = "genesys_closer.worker.broker.prompt_reconnect:PromptReconnectConsumer"
SCHEDULER = "genesys_closer.worker.broker.prompt_reconnect:PromptReconnectScheduler"


def _configuration() -> dict[str, Any]:
    settings = _settings()
    _prepare_metrics_dir(settings)
    try:  # the sweep schedules need no secrets: Flower, which loads this app too, is not given the orgs' secrets
        orgs = load_org_settings(settings, need_secrets=False)
    except ConfigError as exc:
        _refuse_to_start(exc)
    return {**worker_config(settings, orgs), "worker_consumer": CONSUMER, "beat_scheduler": SCHEDULER}


@functools.cache
def build_app() -> Celery:
    """The worker app; its configuration is read from the settings when Celery first needs it. Workers, beat, Flower
    and the liveness probe run on it, with three reconnection defects of kombu, Celery and billiard fixed
    (``worker.broker.reconnect_fixes``), and two costs per close cut: a waiting close's traceback copies
    (``worker.running.traceback_copies``) and kombu's new redis-py client per command
    (``worker.broker.channel_client``)."""
    reconnect_fixes.apply()
    traceback_copies.apply()
    channel_client.apply()
    app = Celery(APP_NAME, include=[TASKS_MODULE])
    app.add_defaults(_configuration)
    return app


def __getattr__(name: str) -> Celery:
    if name == "app":
        return build_app()
    raise AttributeError(f"module {__name__!r} has no attribute {name!r}")


@worker_init.connect  # type: ignore[untyped-decorator]
def _require_credentials(**_: Any) -> None:
    """A worker without Genesys credentials would report ready and then fail every task: refuse to start. Every
    org of the orgs file is checked too (one line naming the org and the field)."""
    try:
        for org in _orgs().values():
            org.require_credentials()
    except ConfigError as exc:
        _refuse_to_start(exc)


@celeryd_after_setup.connect  # type: ignore[untyped-decorator]
def _direct_queue_first(sender: str, instance: Any, **_: Any) -> None:
    """The worker's own queue (``worker_direct``, where the liveness probe sends its task) is consumed before the
    others. kombu's Redis transport pops its queues in the order they were added, and Celery adds this one last:
    behind a batch's thousands of queued items the probe would wait its turn, and a busy, healthy worker would be
    reported dead (and restarted by its supervisor)."""
    consume_from = instance.app.amqp.queues.consume_from
    direct = worker_direct(sender).name
    if direct in consume_from:
        ordered = {direct: consume_from[direct]} | {name: q for name, q in consume_from.items() if name != direct}
        consume_from.clear()
        consume_from.update(ordered)


@celeryd_after_setup.connect  # type: ignore[untyped-decorator]
def _freeze_before_pool_forks(**_: Any) -> None:
    """Set up and about to start its pool: what is loaded now is frozen, so Celery's collection before each pool fork
    skips it, with what each pool process would load after its fork (``worker.running.pool_forks``)."""
    pool_forks.load_what_pool_processes_need()
    frozen = pool_forks.freeze_what_is_loaded()
    logging.getLogger("genesys_closer.worker").debug("froze %d objects before forking the pool", frozen)


@worker_ready.connect  # type: ignore[untyped-decorator]
def _on_ready(**_: Any) -> None:
    settings = _settings()
    from genesys_closer.config.redis_keys import keys_for
    from genesys_closer.shared.redis_connection import connect
    from genesys_closer.worker.recovery.redrive import remember_redis_run_id

    client = connect(settings.redis_target)
    for org in _orgs():
        remember_redis_run_id(client, keys_for(org))
    if settings.metrics_port:
        from genesys_closer.worker.ops import metrics

        metrics.serve(settings.metrics_port)


@worker_process_shutdown.connect  # type: ignore[untyped-decorator]
def _metrics_process_exited(pid: int | None = None, **_: Any) -> None:
    if _settings().metrics_port:
        from genesys_closer.worker.ops import metrics

        metrics.process_exited(pid or os.getpid())


@setup_logging.connect  # type: ignore[untyped-decorator]
def _configure_logging(loglevel: Any = None, **_: Any) -> None:
    """Celery's own logging setup is replaced by ours (redacting, optional JSON)."""
    settings = _settings()
    try:  # beat and Flower log too, and may not be given the orgs' secrets (a secret not given cannot leak)
        orgs = load_org_settings(settings, need_secrets=False)
    except ConfigError as exc:
        _refuse_to_start(exc)
    secrets = [org.genesys_client_secret.get_secret_value() for org in orgs.values() if org.genesys_client_secret]
    level = loglevel if isinstance(loglevel, str) else logging.getLevelName(loglevel or settings.log_level)
    configure_logging(str(level), settings.log_format, secrets)  # every org's secret is redacted
