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

Each pool process, as Celery starts it (``process_initializer``), sets its parent-death signal through billiard, which
builds a cffi ``FFI`` and parses a C declaration when cffi is installed (it is: cryptography needs it). That imports
pycparser and builds its parser: 30-45 ms of CPU in every new pool process, against 4 ms once it is loaded
(measured 2026-12-02, forks of a process with and without it loaded). The worker loads it once, before the freeze and
the forks, by reading its own parent-death signal the same way; every pool process inherits it.
"""

from __future__ import annotations

import contextlib
import gc


def load_what_pool_processes_need() -> None:
    """Load, in the worker's main process, what each pool process would otherwise load after its fork: billiard's
    parent-death-signal call (its cffi parser). Reading the signal changes nothing; off Linux it is not supported,
    and the pool processes skip it the same way."""
    from billiard.util import get_pdeathsig  # type: ignore[import-untyped]

    with contextlib.suppress(OSError):
        get_pdeathsig()


def freeze_what_is_loaded() -> int:
    """Collect, then freeze every object tracked now; returns how many objects are frozen."""
    gc.collect()
    gc.freeze()
    return gc.get_freeze_count()
