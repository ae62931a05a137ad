"""Analytics rows decide what conversation reads decide: every emulator kind, read both ways, agrees."""

from __future__ import annotations

import random
import time

import pytest

from genesys_closer.emulator.model import KINDS, build_conversation, render_analytics, render_message_conversation
from genesys_closer.worker.closing.analytics_state import (
    row_ended,
    row_is_web_messaging,
    row_participant_states,
    row_pending_wrapups,
)
from genesys_closer.worker.closing.conversation_state import is_closed, is_web_messaging, pending_wrapups


@pytest.mark.parametrize("kind", KINDS)
@pytest.mark.parametrize("type_on", ["customer", "all"])
def test_an_analytics_row_reads_like_the_conversation(kind: str, type_on: str) -> None:
    conversation = build_conversation(kind, time.time(), random.Random(7))
    read = render_message_conversation(conversation, conversation.participants, type_on)
    row = render_analytics(conversation, conversation.participants)
    assert row_ended(row) == is_closed(read)
    assert row_is_web_messaging(row) == is_web_messaging(read)
    if is_closed(read):  # wrap-ups owed are reported for closed conversations
        assert row_pending_wrapups(row) == len(pending_wrapups(read))
    states = row_participant_states(row)
    assert [s["purpose"] for s in states] == [p["purpose"] for p in read["participants"]]


def test_after_call_work_does_not_keep_a_conversation_open() -> None:
    row = {"conversationId": "c", "participants": [
        {"purpose": "customer", "sessions": [{"mediaType": "message", "messageType": "webmessaging",
                                             "segments": [{"segmentType": "interact", "segmentEnd": "t"}]}]},
        {"purpose": "agent", "sessions": [{"mediaType": "message", "messageType": "webmessaging", "segments": [
            {"segmentType": "interact", "segmentEnd": "t"}, {"segmentType": "wrapup"}]}]}]}
    assert row_ended(row) and row_pending_wrapups(row) == 1
    row["participants"][1]["sessions"][0]["segments"].append({"segmentType": "interact"})  # back in it
    assert not row_ended(row)


@pytest.mark.parametrize("row", [
    {},
    {"participants": "x"},
    {"participants": [{"purpose": "customer"}]},  # described without segments yet
    {"participants": [{"purpose": "customer", "sessions": [{"segments": [{"segmentType": "interact"}]}]}]},
    {"participants": [{"purpose": "customer", "sessions": [{"segments": ["x", 1]}]}]},
])
def test_unfinished_or_malformed_rows_are_not_ended(row: dict[str, object]) -> None:
    assert not row_ended(row)
    assert not row_is_web_messaging(row)


def test_conversation_end_alone_ends_a_row() -> None:
    assert row_ended({"conversationEnd": "2026-01-01T00:00:00.000Z", "participants": []})
