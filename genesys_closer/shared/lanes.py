"""Which lane the current work runs in: ``interactive`` (single closes: an app or a person waits) or ``bulk``
(batch items, sweeps). Set around a unit of work, read by the transport when it reserves a rate-limit slot.

Bulk work may reserve rate-limit slots only a short horizon ahead (``BULK_HORIZON_SECONDS``); interactive work as
far as the inline wait allows. So a single close sent while a big batch runs waits behind at most that horizon of
bulk reservations instead of seconds of them, and bulk still fills the limit when nothing interactive is waiting
(the next slot is always reserved by someone).

Bulk work never sleeps on a slot while it holds a pool process another org's work could use: before its first
call a bulk close takes a slot at most ``BULK_HORIZON_SECONDS`` away (``Transport.hold_first_slot``), held in its
lane for that call, or hands its task back to the broker until its turn in the limiter's line.
"""

from __future__ import annotations

from collections.abc import Iterator
from contextlib import contextmanager
from contextvars import ContextVar

INTERACTIVE = "interactive"
BULK = "bulk"
BULK_HORIZON_SECONDS = 0.3

_lane: ContextVar[str] = ContextVar("genesys_closer_lane", default=INTERACTIVE)
_held: ContextVar[list[float] | None] = ContextVar("genesys_closer_held_slot", default=None)


def current_lane() -> str:
    return _lane.get()


@contextmanager
def lane(name: str) -> Iterator[None]:
    """Run the block in lane ``name`` (``interactive`` or ``bulk``)."""
    if name not in {INTERACTIVE, BULK}:
        raise ValueError(f"unknown lane {name!r}")
    token = _lane.set(name)
    held = _held.set([])  # a slot held in this block serves this block's next request only
    try:
        yield
    finally:
        _held.reset(held)
        _lane.reset(token)


def hold_slot(send_at: float) -> None:
    """Keep a reserved slot (``send_at``: ``time.monotonic()`` seconds) for the next request of this lane block."""
    box = _held.get()
    if box is None:
        raise RuntimeError("a slot can be held only inside a lane block")
    box[:] = [send_at]


def take_held_slot() -> float | None:
    """The slot held for this request (then no longer held), or None."""
    box = _held.get()
    return box.pop() if box else None
