"""Which lane the current work runs in: ``interactive`` (single closes: an app or a person waits) or ``bulk``
(batch items, sweeps). Set around a unit of work, read by the transport when it reserves a rate-limit slot.

Bulk work may reserve rate-limit slots only a short horizon ahead (``BULK_HORIZON_SECONDS``); interactive work as
far as the inline wait allows. So a single close sent while a big batch runs waits behind at most that horizon of
bulk reservations instead of seconds of them, and bulk still fills the limit when nothing interactive is waiting
(the next slot is always reserved by someone).
"""

from __future__ import annotations

from collections.abc import Iterator
from contextlib import contextmanager
from contextvars import ContextVar

INTERACTIVE = "interactive"
BULK = "bulk"
BULK_HORIZON_SECONDS = 0.3

_lane: ContextVar[str] = ContextVar("genesys_closer_lane", default=INTERACTIVE)


def current_lane() -> str:
    return _lane.get()


@contextmanager
def lane(name: str) -> Iterator[None]:
    """Run the block in lane ``name`` (``interactive`` or ``bulk``)."""
    if name not in {INTERACTIVE, BULK}:
        raise ValueError(f"unknown lane {name!r}")
    token = _lane.set(name)
    try:
        yield
    finally:
        _lane.reset(token)
