"""How scripts/test hands tests to its xdist processes (``--dist loadgroup``, replaced by the scheduler below).

Two rules, both about the two cores being the suite's bottleneck:

* **One test at a time, in the suite's order** (tests/conftest.py sorts the longest first): a process gets its next
  unit when it has at most one test left, so a long test never queues behind another long one on a busy process
  while another process idles. The quick tests (``QUICK_DIRS``) go out a few at a time (``queued_at_most``).
  (xdist's loadscope/loadgroup schedulers keep up to three tests queued per process and sort the units by size.)
* **The tests of a module in SHARED_PROCESS run in one process**: the modules whose tests share a module-scoped
  fixture (a browser, an intake server, a clone and wheel build, an import graph: made once, not once per process
  that happens to run one of the module's tests), the SDK tests (the SDK is imported once; tests/sdk.py) and the
  console's browser tests (one Chromium and one console intake, session-scoped, for all of them).

The groups are named here, by module, rather than by ``xdist_group`` marks: xdist 3.8 marks a group by renaming the
test's node id, which pytest 9 no longer allows (the marks have no effect there). tests/conftest.py refuses a
collection where a module-scoped fixture is used by a module missing from SHARED_PROCESS, so the list keeps up.
"""

from __future__ import annotations

from typing import Any

import pytest
from xdist.scheduler import LoadScopeScheduling
from xdist.workermanage import WorkerController

SDK = "sdk"
CONSOLE = "console"
SHARED_PROCESS: dict[str, str] = {  # module -> the group its tests run in
    "tests/unit/test_data_action.py": SDK,
    "tests/emulator/test_sdk_contract.py": SDK,
    # the browser and the console intake (tests/console/conftest.py, session-scoped): one of each per suite
    **{f"tests/console/test_console_{name}.py": CONSOLE for name in ("walk", "security", "orgs", "paging")},
    **{module: module for module in (  # a module-scoped fixture each
        "tests/e2e/test_install.py", "tests/fleet/test_flower.py",
        "tests/fleet/test_intake.py", "tests/fleet/test_org_grants.py", "tests/project/test_layers.py",
        "tests/project/test_lock.py")},
}


QUICK_DIRS = ("tests/unit/", "tests/worker/", "tests/producer/")  # tests of a few milliseconds to a few seconds
QUICK_QUEUED = 4


def module_of(nodeid: str) -> str:
    return nodeid.split("::", 1)[0]


class OneAtATimeGroups(LoadScopeScheduling):
    """A unit is a test, or every test of a SHARED_PROCESS group; units go out in collection order, one at a time."""

    def __init__(self, config: pytest.Config, log: Any = None) -> None:
        config.option.loadscopereorder = False  # keep tests/conftest.py's order (longest first)
        super().__init__(config, log)

    def _split_scope(self, nodeid: str) -> str:
        return SHARED_PROCESS.get(module_of(nodeid), nodeid)

    def _reschedule(self, node: WorkerController) -> None:
        if node.shutting_down:
            return
        if not self.workqueue:
            node.shutdown()
            return
        while self.workqueue and self._pending_of(self.assigned_work[node]) <= queued_at_most(
                next(iter(self.workqueue))):
            self._assign_work_unit(node)


def queued_at_most(unit: str) -> int:
    """How many tests a process may hold queued and still be handed ``unit``: one for most, so a long test never
    queues behind another; QUICK_QUEUED for the quick ones, which would otherwise each wait for a round trip
    through the busy controller before they start (measured: 93 ms between two unit tests, whose median runs in
    a few milliseconds: 43 s of the test processes' time went to those waits)."""
    return QUICK_QUEUED if unit.startswith(QUICK_DIRS) and unit not in SHARED_PROCESS.values() else 1


def module_scoped(item: pytest.Item) -> bool:
    """The test uses a fixture scoped to its module (made once per module per process)."""
    info = getattr(item, "_fixtureinfo", None)
    if info is None:
        return False
    return any(defs and defs[-1].scope == "module" for defs in info.name2fixturedefs.values())


def check_shared_process(items: list[pytest.Item]) -> None:
    """Every module with a module-scoped fixture is in SHARED_PROCESS."""
    missing = sorted({module_of(item.nodeid) for item in items if module_scoped(item)} - set(SHARED_PROCESS))
    if missing:
        raise pytest.UsageError(f"{', '.join(missing)}: a module-scoped fixture; add the module to SHARED_PROCESS in "
                                "tests/scheduling.py so that its tests run in one process")
