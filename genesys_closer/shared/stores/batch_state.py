"""A batch's state, named, and the one pure function that moves it (``next_state``).

    enqueuing ──enqueued──> running ──completed──> finished
        │                     │
        ├──cancel / stop──────┴──cancel──> cancelled      (final: items not yet run end as ``cancelled``)
        │                      └──stop───> stopped        (the breaker opened: items not yet run are not attempted)

``finished`` and ``cancelled`` are final: no event changes them, so a stop never overwrites them, and a cancel and a
finish cannot overwrite each other (whichever lands first wins). ``stopped`` ends the work too; a cancel after it
changes nothing (the breaker's reason stays). ``completed`` (every item counted) keeps a cancelled or stopped state
and only stamps when the batch ended; ``enqueued`` (every item published) records the total once.

Redis applies this table atomically: ``lua_table()`` renders it for
``genesys_closer/shared/lua/batch_transition.lua``, so the script and this function cannot disagree.
"""

from __future__ import annotations

from enum import StrEnum


class BatchState(StrEnum):
    ENQUEUING = "enqueuing"   # items are being validated and published; the total is not known yet
    RUNNING = "running"       # every item is published; they run
    FINISHED = "finished"     # every item has an outcome
    CANCELLED = "cancelled"   # an operator cancelled it
    STOPPED = "stopped"       # the circuit breaker opened while it ran


class BatchEvent(StrEnum):
    ENQUEUED = "enqueued"     # every item is published (the producer, once)
    COMPLETED = "completed"   # every item is counted (the last outcome recorded, once)
    CANCEL = "cancel"         # an operator's cancel
    STOP = "stop"             # the circuit breaker is open


FINAL_STATES = frozenset({BatchState.FINISHED, BatchState.CANCELLED})
# States whose items not yet run end without being attempted.
ENDING_STATES = frozenset({BatchState.CANCELLED, BatchState.STOPPED})


def next_state(state: BatchState, event: BatchEvent) -> BatchState | None:
    """The state ``event`` moves a batch in ``state`` to, or None when it does not apply (nothing is written)."""
    if state in FINAL_STATES and event in (BatchEvent.CANCEL, BatchEvent.STOP):
        return None
    if state is BatchState.FINISHED:
        return None  # every event of a finished batch has happened
    if event is BatchEvent.ENQUEUED:
        return BatchState.RUNNING if state is BatchState.ENQUEUING else state if state in ENDING_STATES else None
    if event is BatchEvent.COMPLETED:
        if state is BatchState.ENQUEUING:
            return None  # items may still be published: done cannot be complete
        return BatchState.FINISHED if state is BatchState.RUNNING else state
    if state is BatchState.STOPPED:
        return None  # already ended by the breaker; neither a cancel nor another stop changes it
    return BatchState.CANCELLED if event is BatchEvent.CANCEL else BatchState.STOPPED


def lua_table() -> str:
    """``next_state`` as a Lua table literal, ``NEXT_STATE[state][event] = next`` (absent: does not apply)."""
    rows = []
    for state in BatchState:
        cells = ", ".join(f"['{event.value}'] = '{after.value}'" for event in BatchEvent
                          if (after := next_state(state, event)) is not None)
        rows.append(f"  ['{state.value}'] = {{{cells}}},")
    return "local NEXT_STATE = {\n" + "\n".join(rows) + "\n}\n"
