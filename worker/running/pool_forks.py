"""Forking pool processes without walking the whole heap each time.

Celery's prefork pool runs a full ``gc.collect()`` in the worker's main process before it forks each pool process
(``AsynPool._create_worker_process``, for Celery's issue 2927). In a worker that has imported Celery, kombu,
redis-py, pydantic and this package that is about 90,000 tracked objects: 53 ms per fork on a 2-core test machine
(2026-12-01), four times at every start and again whenever a pool process is replaced (a time limit, a killed
process, a broker reconnect's cancel).

Once the worker is set up (everything imported, the app finalized) it collects once and freezes what is left
(``gc.freeze``): every later collection skips those objects, so a fork's collection walks only what the worker made
since, and pool processes keep sharing those objects' memory pages with the main process instead of copying each
page when a collection in the child touches its objects (the use Python's documentation gives for ``gc.freeze``).
What it costs: the collection before the freeze frees what was garbage then; frozen objects are nearly all the
modules' and the app's, which live as long as the process, and one that is dropped later is still freed by its
reference count (only a reference cycle among frozen objects would stay); collections go on as before for
everything created after.
"""

from __future__ import annotations

import gc


def freeze_what_is_loaded() -> int:
    """Collect, then freeze every object tracked now; returns how many objects are frozen."""
    gc.collect()
    gc.freeze()
    return gc.get_freeze_count()
