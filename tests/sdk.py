"""The official Genesys SDK (PureCloudPlatformClientV2), imported when a test first touches it.

Importing it costs about 1.3 CPU-seconds (thousands of generated model modules). A module-level import made every
test process pay that at collection; through these proxies only the process that runs an SDK test does, and the
SDK tests share one process (tests/scheduling.py). Without the SDK installed, the tests that use it are skipped,
as ``pytest.importorskip`` at module level did.
"""

from __future__ import annotations

import functools
from types import ModuleType
from typing import Any

import pytest

SDK = "PureCloudPlatformClientV2"


@functools.cache
def _load(name: str) -> ModuleType:
    return pytest.importorskip(name)


class LazyModule:
    """Attribute access imports the module (or skips the test when it is not installed)."""

    def __init__(self, name: str) -> None:
        self._name = name

    def __getattr__(self, attribute: str) -> Any:
        if attribute.startswith("_"):  # pytest's collection looks for __test__, _pytestfixturefunction, ...
            raise AttributeError(attribute)
        return getattr(_load(self._name), attribute)


gc: Any = LazyModule(SDK)
rest: Any = LazyModule(f"{SDK}.rest")
