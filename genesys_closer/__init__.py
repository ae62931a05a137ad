"""genesys-closer: close Genesys Cloud web messaging conversations from a queue of Celery workers.

Apps need one import and only ``REDIS_URL``:

    from genesys_closer import close_conversation
    close_conversation.delay("3b47a74f-a827-4166-ae62-f6ba6d7268ae")

Importing this package loads nothing else; the names below are loaded on first use, and none of them pulls in the
worker's Genesys dependencies (requests, tenacity, cryptography).

Sub-packages (the repository's top-level folders): ``config``, ``worker``, ``producer`` and ``emulator``.
"""

from __future__ import annotations

import importlib
from typing import Any

_EXPORTS = {
    "close_conversation": "genesys_closer.producer.api",
    "close": "genesys_closer.producer.api",
    "close_many": "genesys_closer.producer.api",
    "CloseClient": "genesys_closer.producer.api",
    "Batch": "genesys_closer.producer.api",
}

__all__ = ["Batch", "CloseClient", "close", "close_conversation", "close_many"]


def __getattr__(name: str) -> Any:
    module = _EXPORTS.get(name)
    if module is None:
        raise AttributeError(f"module 'genesys_closer' has no attribute {name!r}")
    return getattr(importlib.import_module(module), name)
