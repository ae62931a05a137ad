"""Table-driven tests of the pure decisions: HTTP (worker.genesys.http_policy) and conversation state."""

from __future__ import annotations

import email.utils

import pytest
from hypothesis import given
from hypothesis import strategies as st

from genesys_closer.shared.rate_limit import RateLimitHeaders
from genesys_closer.worker.closing.conversation_state import (
    is_closed,
    is_web_messaging,
    open_participants,
    pending_wrapups,
)
from genesys_closer.worker.genesys import errors
from genesys_closer.worker.genesys.http_policy import backoff_seconds, error_for_status, parse_retry_after

STATUS_TABLE = [
    (400, errors.BadRequest, False),
    (401, errors.AuthenticationFailed, False),
    (403, errors.Forbidden, False),
    (404, errors.NotFound, False),
    (409, errors.BadRequest, False),
    (429, errors.RateLimited, True),
    (500, errors.ServerError, True),
    (502, errors.ServerError, True),
    (503, errors.ServerError, True),
    (504, errors.ServerError, True),
]


@pytest.mark.parametrize(("status", "cls", "retryable"), STATUS_TABLE)
def test_status_classification(status: int, cls: type, retryable: bool) -> None:
    assert error_for_status(status) is cls
    assert issubclass(cls, errors.RetryableError) is retryable
    assert issubclass(cls, errors.PermanentError) is not retryable
    assert issubclass(cls, errors.RetryableError) is retryable
    assert issubclass(cls, errors.PermanentError) is not retryable


NOW = 1_800_000_000.0
RETRY_AFTER_TABLE = [
    (None, None),
    ("", None),
    ("38", 38.0),
    ("0", 0.0),
    ("1.5", 1.5),
    ("-4", 0.0),
    ("99999999", 3600.0),
    ("soon", None),
    ("nan", None),
    (email.utils.formatdate(NOW + 20, usegmt=True), 20.0),
    (email.utils.formatdate(NOW - 20, usegmt=True), 0.0),
]


@pytest.mark.parametrize(("header", "expected"), RETRY_AFTER_TABLE)
def test_parse_retry_after(header: str | None, expected: float | None) -> None:
    assert parse_retry_after(header, NOW) == expected


BACKOFF_TABLE = [
    # attempt, retry_after, rng value, expected
    (0, None, 1.0, 0.5),
    (1, None, 1.0, 1.0),
    (3, None, 1.0, 4.0),
    (3, None, 0.0, 0.0),
    (30, None, 1.0, 60.0),  # capped
    (0, 10.0, 0.0, 10.0),  # Retry-After is a floor
    (0, 10.0, 0.5, 10.5),  # plus jitter
    (0, 500.0, 0.0, 60.0),  # the floor is capped too
]


@pytest.mark.parametrize(("attempt", "retry_after", "draw", "expected"), BACKOFF_TABLE)
def test_backoff_table(attempt: int, retry_after: float | None, draw: float, expected: float) -> None:
    assert backoff_seconds(attempt, retry_after, rng=lambda: draw) == pytest.approx(expected)


@given(attempt=st.integers(min_value=-5, max_value=1000), draw=st.floats(min_value=0, max_value=1),
       retry_after=st.none() | st.floats(min_value=0, max_value=10_000))
def test_backoff_is_bounded_and_honours_retry_after(attempt: int, draw: float, retry_after: float | None) -> None:
    delay = backoff_seconds(attempt, retry_after, cap_seconds=60.0, rng=lambda: draw)
    assert 0.0 <= delay <= 61.0
    if retry_after is not None:
        assert delay >= min(retry_after, 60.0)


def p(state: str, purpose: str = "customer", **extra: object) -> dict[str, object]:
    return {"id": f"{purpose}-{state}", "state": state, "purpose": purpose, **extra}


CLOSED_TABLE = [
    ({"participants": [p("disconnected"), p("disconnected", "agent")]}, True),
    ({"participants": [p("terminated"), p("disconnected", "agent")]}, True),
    ({"participants": [p("connected"), p("disconnected", "agent")]}, False),
    ({"participants": [p("disconnected"), p("alerting", "agent")]}, False),
    ({"participants": [p("disconnected"), p("parked", "agent")]}, False),
    ({"participants": [p("closed")]}, False),  # "closed" is not a Genesys state
    ({"participants": []}, False),
    ({}, False),
    ({"participants": "nope"}, False),
    ({"participants": [None]}, False),
]


@pytest.mark.parametrize(("conversation", "closed"), CLOSED_TABLE)
def test_is_closed(conversation: dict[str, object], closed: bool) -> None:
    assert is_closed(conversation) is closed


@given(st.lists(st.sampled_from(["connected", "disconnected", "terminated", "alerting", "parked", "none"]),
                min_size=1, max_size=6))
def test_is_closed_iff_every_participant_left(states: list[str]) -> None:
    conversation = {"participants": [p(s) for s in states]}
    assert is_closed(conversation) == all(s in {"disconnected", "terminated"} for s in states)
    assert (len(open_participants(conversation)) == 0) == is_closed(conversation)


@pytest.mark.parametrize(("types", "expected"), [
    (["webmessaging", "webmessaging"], True),
    (["sms", "sms"], False),
    (["webmessaging", "whatsapp"], False),
    ([], False),
])
def test_is_web_messaging(types: list[str], expected: bool) -> None:
    conversation = {"participants": [{"type": t} for t in types]}
    assert is_web_messaging(conversation) is expected


def test_pending_wrapups_only_agents_owing_one() -> None:
    conversation = {"participants": [
        p("disconnected", "agent", wrapupRequired=True),
        p("disconnected", "customer", wrapupRequired=True),
        {**p("disconnected", "agent", wrapupRequired=True, wrapup={"code": "x"}), "id": "done"},
        {**p("disconnected", "agent", wrapupRequired=True, wrapupSkipped=True), "id": "skipped"},
        {**p("disconnected", "agent", wrapupRequired=False), "id": "not-required"},
    ]}
    assert pending_wrapups(conversation) == ["agent-disconnected"]


@pytest.mark.parametrize(("headers", "pause"), [
    ({"inin-ratelimit-allowed": "300", "inin-ratelimit-count": "10", "inin-ratelimit-reset": "30"}, 0.0),
    ({"inin-ratelimit-allowed": "300", "inin-ratelimit-count": "298", "inin-ratelimit-reset": "30"}, 30.0),
    ({"inin-ratelimit-allowed": "300", "inin-ratelimit-count": "301", "inin-ratelimit-reset": "7"}, 7.0),
])
def test_rate_limit_headers(headers: dict[str, str], pause: float) -> None:
    parsed = RateLimitHeaders.parse(headers)
    assert parsed is not None
    assert parsed.pause_seconds() == pause


@pytest.mark.parametrize("headers", [{}, {"inin-ratelimit-allowed": "x", "inin-ratelimit-count": "1",
                                          "inin-ratelimit-reset": "1"}])
def test_rate_limit_headers_absent_or_garbage(headers: dict[str, str]) -> None:
    assert RateLimitHeaders.parse(headers) is None
