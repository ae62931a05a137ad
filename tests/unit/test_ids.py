"""Conversation ID validation: the first thing that happens, before any URL exists."""

from __future__ import annotations

import pickle

import pytest
from hypothesis import given
from hypothesis import strategies as st

from genesys_closer.config.errors import CloserError
from genesys_closer.shared.ids import InvalidConversationId, parse_conversation_id

GOOD = "3b47a74f-a827-4166-ae62-f6ba6d7268ae"


@pytest.mark.parametrize(("raw", "expected"), [
    (GOOD, GOOD),
    (GOOD.upper(), GOOD),
    (f"  {GOOD}\n", GOOD),
])
def test_valid_ids(raw: str, expected: str) -> None:
    assert parse_conversation_id(raw) == expected


BAD = [
    None, 42, 4.2, b"bytes", [GOOD], {"id": GOOD}, "", "   ", "../x", "../../api/v2/users", f"{GOOD}/../x",
    f"{GOOD}%2F..", "3b47a74f%2Da827-4166-ae62-f6ba6d7268ae", f"{{{GOOD}}}", f"urn:uuid:{GOOD}",
    GOOD.replace("-", ""), GOOD[:-1], GOOD + "0", "x" * 10_000,
    "3b47a74f-a827-4166-ae62-f6ba6d7268a\u0435",  # Cyrillic e
    "\uff13b47a74f-a827-4166-ae62-f6ba6d7268ae",  # full-width digit
    "٣b47a74f-a827-4166-ae62-f6ba6d7268ae",  # Arabic-Indic digit
    "=HYPERLINK(\"http://x\")", "3b47a74f-a827-4166-ae62-f6ba6d7268ae?x=1", "3b47a74f-a827-4166-ae62-f6ba6d7268ae#",
    "\x00" + GOOD,
]


@pytest.mark.parametrize("raw", BAD, ids=lambda v: repr(v)[:40])
def test_invalid_ids_rejected_with_reason(raw: object) -> None:
    with pytest.raises(InvalidConversationId) as caught:
        parse_conversation_id(raw)
    assert isinstance(caught.value, CloserError)
    assert "invalid conversation id" in str(caught.value)
    assert len(str(caught.value)) < 300  # a 10 kB value is not echoed in full


def test_error_pickles() -> None:
    error = InvalidConversationId("../x", "not a UUID")
    clone = pickle.loads(pickle.dumps(error))
    assert str(clone) == str(error)


@given(st.text(max_size=120))
def test_anything_accepted_is_a_canonical_uuid(text: str) -> None:
    try:
        parsed = parse_conversation_id(text)
    except InvalidConversationId:
        return
    assert len(parsed) == 36 and parsed == parsed.lower() and parsed.count("-") == 4
    assert all(c in "0123456789abcdef-" for c in parsed)
