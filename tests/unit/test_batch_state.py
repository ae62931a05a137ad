"""``next_state`` over every batch state x event, from one table (as ``test_policy`` tests the retry policy)."""

from __future__ import annotations

import itertools

import pytest

from genesys_closer.shared.stores.batch_state import FINAL_STATES, BatchEvent, BatchState, lua_table, next_state

E, R, F, C, S = (BatchState.ENQUEUING, BatchState.RUNNING, BatchState.FINISHED, BatchState.CANCELLED,
                 BatchState.STOPPED)
ENQUEUED, COMPLETED, CANCEL, STOP = BatchEvent.ENQUEUED, BatchEvent.COMPLETED, BatchEvent.CANCEL, BatchEvent.STOP

# state: {event: the state after it, None: the event does not apply and nothing is written}
TABLE: dict[BatchState, dict[BatchEvent, BatchState | None]] = {
    E: {ENQUEUED: R, COMPLETED: None, CANCEL: C, STOP: S},  # cannot complete while items may still be published
    R: {ENQUEUED: None, COMPLETED: F, CANCEL: C, STOP: S},
    F: {ENQUEUED: None, COMPLETED: None, CANCEL: None, STOP: None},  # final
    C: {ENQUEUED: C, COMPLETED: C, CANCEL: None, STOP: None},  # final; its total and its end are still recorded
    S: {ENQUEUED: S, COMPLETED: S, CANCEL: None, STOP: None},  # the breaker's stop keeps its reason
}


def test_the_table_covers_every_state_and_event() -> None:
    assert set(TABLE) == set(BatchState)
    assert all(set(row) == set(BatchEvent) for row in TABLE.values())


@pytest.mark.parametrize(("state", "event"), list(itertools.product(BatchState, BatchEvent)))
def test_next_state(state: BatchState, event: BatchEvent) -> None:
    assert next_state(state, event) is TABLE[state][event]


@pytest.mark.parametrize("state", sorted(FINAL_STATES))
def test_final_states_never_change(state: BatchState) -> None:
    assert {next_state(state, event) for event in BatchEvent} <= {None, state}


def test_cancel_and_finish_cannot_overwrite_each_other() -> None:
    assert next_state(next_state(R, CANCEL) or R, COMPLETED) is C  # cancelled, then every item counted
    assert next_state(next_state(R, COMPLETED) or R, CANCEL) is None  # finished: the late cancel changes nothing


def test_the_lua_table_is_the_function() -> None:
    rendered = lua_table()
    for state, event in itertools.product(BatchState, BatchEvent):
        after = next_state(state, event)
        cell = f"['{event.value}'] = '{after.value}'" if after else f"['{event.value}']"
        row = next(line for line in rendered.splitlines() if line.startswith(f"  ['{state.value}']"))
        assert (cell in row) is (after is not None), (state, event, row)
