"""Task names and queues: the contract between producers (any Celery app) and workers.

Task names keep their historical ``worker.tasks.*`` form: apps that ``send_task`` by name keep working whatever
the Python import path of this package is.
"""

from __future__ import annotations

from genesys_closer.config.orgs import DEFAULT_ORG

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

# Every task of an org other than ``default`` names it in the keyword argument ``org`` (absent: ``default``, so
# messages of single-org releases, and apps that never heard of orgs, keep their meaning).
ORG_KWARG = "org"


def org_kwargs(org: str) -> dict[str, str]:
    """The keyword arguments that name ``org`` in a task message: none for the default org."""
    return {} if org == DEFAULT_ORG else {ORG_KWARG: org}
