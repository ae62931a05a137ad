"""Task names and queues: the contract between producers (any Celery app) and workers.

Task names keep their historical ``worker.tasks.*`` form: apps that ``send_task`` by name keep working whatever
the Python import path of this package is.
"""

from __future__ import annotations

TASK_NAME = "worker.tasks.close_conversation"
SWEEP_TASK_NAME = "worker.tasks.sweep"
PROBE_TASK_NAME = "worker.tasks.health_probe"
REDRIVE_TASK_NAME = "worker.tasks.redrive_stalled_batches"
CHECKS_TASK_NAME = "worker.tasks.pump_batched_checks"
FEED_TASK_NAME = "worker.tasks.feed_batches"
READINESS_TASK_NAME = "worker.tasks.readiness"

QUEUE_INTERACTIVE = "interactive"
QUEUE_DEFAULT = "celery"
QUEUE_BULK = "bulk"
QUEUES = (QUEUE_INTERACTIVE, QUEUE_DEFAULT, QUEUE_BULK)
