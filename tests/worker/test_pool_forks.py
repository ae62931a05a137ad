"""The worker freezes what it has loaded before Celery forks its pool (``worker.running.pool_forks``): Celery's
collection before each fork then skips the imported modules' objects. Run in a process of its own: a frozen heap
stays frozen."""

from __future__ import annotations

import json
import subprocess
import sys
import textwrap

SCRIPT = textwrap.dedent("""
    import gc, json, weakref
    from celery.signals import celeryd_after_setup
    import genesys_closer.worker.app  # connects the worker's signal handlers

    class Node:
        pass

    garbage = Node()
    garbage.me = garbage  # a cycle only a collection frees
    gone = weakref.ref(garbage)
    del garbage
    before = len(gc.get_objects())
    celeryd_after_setup.send(sender="w1@test", instance=None, conf=None)  # as Celery does before starting the pool
    print(json.dumps({"frozen": gc.get_freeze_count(), "tracked_before": before, "collected": gone() is None,
                      "left_to_walk": len(gc.get_objects())}))
""")


def test_the_worker_frees_garbage_then_freezes_what_is_loaded_before_its_pool_forks() -> None:
    out = subprocess.run([sys.executable, "-c", SCRIPT], capture_output=True, text=True, timeout=60, check=True)
    seen = json.loads(out.stdout.strip().splitlines()[-1])
    assert seen["collected"]  # garbage from before the freeze was freed, not frozen
    assert seen["frozen"] >= seen["tracked_before"] * 0.9  # what was loaded is frozen
    assert seen["left_to_walk"] < seen["frozen"] / 10  # what a fork's collection still walks
