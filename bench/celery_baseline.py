"""Baseline (b): Celery's own per-worker ``rate_limit`` as the only throttle.

The same close algorithm, but each worker process has its own token and no fleet-wide limiter or shared
pause: ``rate_limit`` (tasks per minute, from ``BENCH_TASK_RATE_LIMIT``) is enforced by each worker instance
separately, and 429s are retried with Celery's ``autoretry_for`` / ``retry_backoff`` / ``retry_jitter``.
Start with ``celery -A bench.celery_baseline worker -Q baseline``.
"""

from __future__ import annotations

import functools
import os
from typing import Any

from celery import Celery

from genesys_closer.config.settings import get_worker_settings
from genesys_closer.shared.celery_config import worker_config
from genesys_closer.worker.factory import Service, build_service
from genesys_closer.worker.genesys.errors import RetryableError

TASK = "bench.close_with_celery_rate_limit"
app = Celery("celery_baseline")
app.conf.update(worker_config(get_worker_settings()))
app.conf.task_routes = {TASK: {"queue": "baseline"}}


@functools.cache
def service(pid: int) -> Service:
    settings = get_worker_settings().model_copy(update={"genesys_rate_limit_per_minute": 1_000_000,
                                                 "retry_max_attempts": 1})
    return build_service(settings)  # no Redis: per-process token, per-process (effectively no) limiter


@app.task(name=TASK, bind=True, rate_limit=os.environ.get("BENCH_TASK_RATE_LIMIT") or None,
          autoretry_for=(RetryableError,), retry_backoff=1, retry_backoff_max=60, retry_jitter=True,
          max_retries=20, acks_late=True)
def close_with_celery_rate_limit(self: Any, conversation_id: str) -> str:
    return service(os.getpid()).closer.close(conversation_id).outcome.value
