"""The close algorithm's attribution decisions, with a scripted in-process client (no HTTP)."""

from __future__ import annotations

from dataclasses import replace
from typing import Any

import pytest

from genesys_closer.config.settings import ClosePolicy
from genesys_closer.shared.outcomes import CloseResult, Outcome
from genesys_closer.worker.closing.closer import CloseOptions, Closer, ConfirmSettings, RetrySettings
from genesys_closer.worker.genesys.errors import BadRequest, ServerError, TransportError

CID = "3b47a74f-a827-4166-ae62-f6ba6d7268ae"


def conversation(state: str) -> dict[str, Any]:
    return {"id": CID, "participants": [
        {"id": "p1", "purpose": "customer", "state": state, "type": "webmessaging"},
        {"id": "p2", "purpose": "agent", "state": state, "type": "webmessaging"}]}


class ScriptedClient:
    def __init__(self, patch_results: list[Exception | None], reads: list[str]) -> None:
        self.patch_results = patch_results
        self.reads = reads

    def get_message_conversation(self, conversation_id: str, tally: Any = None) -> dict[str, Any]:
        return conversation(self.reads.pop(0) if len(self.reads) > 1 else self.reads[0])

    def disconnect_message_conversation(self, conversation_id: str, tally: Any = None) -> None:
        result = self.patch_results.pop(0)
        if result is not None:
            raise result


def closer(client: ScriptedClient) -> Closer:
    return Closer(client, retry=RetrySettings(max_attempts=3, base_seconds=0.0),  # type: ignore[arg-type]
                  confirm=ConfirmSettings(timeout_seconds=1.0, initial_delay_seconds=0.0),
                  sleep=lambda _: None, rng=lambda: 0.0)


CONFLICT = BadRequest("conflict", 409, "conflict")


@pytest.mark.parametrize(("patch_results", "outcome"), [
    ([None], Outcome.CLOSED),  # plain success
    ([CONFLICT], Outcome.ALREADY_CLOSED),  # someone else closed it between our read and our PATCH
    ([TransportError("read timed out"), CONFLICT], Outcome.CLOSED),  # our PATCH landed, its answer was lost
    ([ServerError("bad gateway", 502), CONFLICT], Outcome.CLOSED),  # a 5xx that was applied anyway
])
def test_who_closed_it(patch_results: list[Exception | None], outcome: Outcome) -> None:
    client = ScriptedClient(list(patch_results), ["connected", "disconnected"])
    patched: list[str] = []
    result = closer(client).close(CID, CloseOptions(), on_patched=patched.append)
    assert result.outcome is outcome
    assert patched == [CID]  # recorded before sending, so a retried task attributes it correctly


def test_retried_task_after_a_sent_patch_reports_closed() -> None:
    client = ScriptedClient([], ["disconnected"])
    result = closer(client).close(CID, CloseOptions(previously_patched=True))
    assert result.outcome is Outcome.CLOSED


@pytest.mark.parametrize("result", [
    CloseResult("", Outcome.INVALID_ID, attempts=0, error="empty"),
    CloseResult("3b47a74f-a827-4166-ae62-f6ba6d7268ae", Outcome.CLOSED, api_calls=3, started_at=1.23456789,
                finished_at=2.5, participant_states=[{"purpose": "agent", "state": "disconnected"}],
                correlation_ids=["c"], confirm_seconds=0.2, action="patch", batch_id="b" * 32),
])
def test_stored_record_round_trips(result: CloseResult) -> None:
    """What Redis keeps leaves defaults out but restores to the same record (times to the millisecond)."""
    restored = CloseResult.from_dict({**result.stored(in_batch=True), "batch_id": result.batch_id})
    assert restored == replace(result, started_at=round(result.started_at, 3))


class Counting(ScriptedClient):
    def __init__(self, reads: list[str]) -> None:
        super().__init__([], reads)
        self.read_count = 0

    def get_message_conversation(self, conversation_id: str, tally: Any = None) -> dict[str, Any]:
        self.read_count += 1
        return super().get_message_conversation(conversation_id, tally)

    def patch_participant(self, conversation_id: str, participant_id: str, body: Any, tally: Any = None) -> None:
        self.reads = ["disconnected"]  # the escalation takes effect


def timed_closer(client: ScriptedClient, slept: list[float]) -> Closer:
    """Timeout 5 s, first read 0.4 s after the action; the clock moves only when the closer sleeps."""
    now = [0.0]

    def sleep(seconds: float) -> None:
        slept.append(seconds)
        now[0] += seconds

    return Closer(client, retry=RetrySettings(max_attempts=1), sleep=sleep, clock=lambda: now[0],  # type: ignore[arg-type]
                  confirm=ConfirmSettings(timeout_seconds=5.0, initial_delay_seconds=0.4, max_interval_seconds=1.0),
                  rng=lambda: 0.0)


def test_a_batched_confirmation_counts_the_time_since_its_patch() -> None:
    """A PATCH the batched reads already waited for 6 s (beyond the 5 s confirm timeout): one read at once decides,
    instead of 5 s more of polling in a pool slot; still open, the outcome is the same as after a full poll."""
    client, slept = Counting(["connected"]), []
    result = timed_closer(client, slept).confirm_patched(CID, CloseOptions(), since_patch_seconds=6.0)
    assert result.outcome is Outcome.UNCONFIRMED and "after 5 s" in (result.error or "")
    assert client.read_count == 1 and sum(slept) == 0
    assert result.confirm_seconds is None
    fresh, slept_fresh = Counting(["connected"]), []
    assert timed_closer(fresh, slept_fresh).confirm_patched(CID, CloseOptions()).outcome is Outcome.UNCONFIRMED
    assert fresh.read_count > 3 and sum(slept_fresh) >= 5.0  # a PATCH sent just now gets the whole timeout


def test_a_batched_confirmation_reads_at_once_and_escalation_gets_the_whole_timeout() -> None:
    """2 s after the PATCH the first read comes without the initial delay and the poll ends 5 s after the PATCH;
    the policy's escalation, a new action, waits the initial delay and may poll the whole timeout; confirm_seconds
    runs from the PATCH."""
    client, slept = Counting(["connected"]), []
    result = timed_closer(client, slept).confirm_patched(CID, CloseOptions(policy=ClosePolicy.PARTICIPANTS),
                                                         since_patch_seconds=2.0)
    assert result.outcome is Outcome.CLOSED and result.action == "participants"
    assert slept[0] == 0.0 and slept[-1] == 0.4  # the first read at once; the escalation's after its delay
    assert 3.0 <= sum(slept[:-1]) < 3.0 + 1.0  # the first poll's reads until 5 s after the PATCH, no longer
    assert result.confirm_seconds == pytest.approx(2.0 + sum(slept))
