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


FORK_SCRIPT = textwrap.dedent("""
    import json, os, sys
    from celery.signals import celeryd_after_setup
    from celery import platforms
    import genesys_closer.worker.app  # connects the worker's signal handlers

    celeryd_after_setup.send(sender="w1@test", instance=None, conf=None)  # as Celery does before starting the pool
    read, write = os.pipe()
    child = os.fork()
    if child == 0:  # a pool process: Celery's process_initializer sets its parent-death signal first
        before = set(sys.modules)
        platforms.set_pdeathsig("SIGKILL")
        os.write(write, json.dumps(sorted(set(sys.modules) - before)).encode())
        os._exit(0)
    os.waitpid(child, 0)
    print(json.dumps({"cffi": "cffi" in sys.modules, "loaded_in_child": json.loads(os.read(read, 65536))}))
""")


def test_a_pool_process_loads_nothing_to_set_its_parent_death_signal() -> None:
    """billiard sets a pool process's parent-death signal through cffi when cffi is installed (cryptography brings
    it), and that imports pycparser and builds its parser in every new process unless the worker loaded it first."""
    out = subprocess.run([sys.executable, "-c", FORK_SCRIPT], capture_output=True, text=True, timeout=60, check=True)
    seen = json.loads(out.stdout.strip().splitlines()[-1])
    assert seen["cffi"]  # the path this guards is the one taken (the worker extra installs cryptography, so cffi)
    assert seen["loaded_in_child"] == []
