"""The worker service: the Celery app and thin tasks, batches, outcomes and results in Redis, the circuit breaker,
metrics, logging and the liveness probe. Its sub-packages are the layers below it: ``closing`` (the close domain)
and ``genesys`` (the Genesys Cloud client).

Run a worker with ``celery -A genesys_closer.worker.app worker``, or ``python -m genesys_closer.worker worker``
(the same command and options, without the ``celery`` umbrella's imports: ``worker/__main__.py``).
"""
