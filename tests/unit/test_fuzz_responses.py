"""Fuzzing the response parsing: whatever Genesys (or a proxy in front of it) answers, a close ends in an
outcome or a typed CloserError, never an unexpected exception."""

from __future__ import annotations

import io
import itertools
import json
from typing import Any

import pytest
import requests
from hypothesis import HealthCheck, given, settings
from hypothesis import strategies as st
from requests.adapters import BaseAdapter

from genesys_closer.config.errors import CloserError
from genesys_closer.shared.outcomes import CloseResult, Outcome
from genesys_closer.shared.rate_limit import InMemoryRateLimiter
from genesys_closer.worker.closing.closer import CloseOptions, Closer, ConfirmSettings, RetrySettings
from genesys_closer.worker.genesys.client import GenesysClient, Transport
from genesys_closer.worker.genesys.errors import PermanentError, RetryableError, ServerError, TransportError
from genesys_closer.worker.genesys.tokens import InProcessTokenProvider, TokenGrant

CID = "3b47a74f-a827-4166-ae62-f6ba6d7268ae"


class ScriptedAdapter(BaseAdapter):
    """Answers every request with the next scripted (status, headers, body)."""

    def __init__(self, replies: list[tuple[int, dict[str, str], bytes]]) -> None:
        super().__init__()
        self.replies = itertools.cycle(replies)
        self.sent = 0

    def send(self, request: requests.PreparedRequest, **kwargs: Any) -> requests.Response:
        status, headers, body = next(self.replies)
        self.sent += 1
        response = requests.Response()
        response.status_code = status
        response.headers.update(headers)
        response.raw = io.BytesIO(body)
        response.request = request
        response.url = request.url or ""
        return response

    def close(self) -> None:
        pass


def closer_over(replies: list[tuple[int, dict[str, str], bytes]]) -> tuple[Closer, ScriptedAdapter]:
    adapter = ScriptedAdapter(replies)
    session = requests.Session()
    session.mount("http://", adapter)
    transport = Transport(InMemoryRateLimiter(1_000_000), session=session, sleep=lambda _: None,
                          max_limiter_wait_seconds=0)
    client = GenesysClient(transport, "http://genesys.invalid", InProcessTokenProvider(lambda: TokenGrant("t", 3600)))
    ticks = itertools.count(step=0.5)
    closer = Closer(client, retry=RetrySettings(max_attempts=2, base_seconds=0.0, inline_max_wait_seconds=1.0),
                    confirm=ConfirmSettings(timeout_seconds=2.0, initial_delay_seconds=0.0), sleep=lambda _: None,
                    clock=lambda: next(ticks), rng=lambda: 0.5)
    return closer, adapter


def assert_well_behaved(replies: list[tuple[int, dict[str, str], bytes]], options: CloseOptions) -> None:
    closer, _ = closer_over(replies)
    try:
        result = closer.close(CID, options)
    except CloserError:
        return
    assert isinstance(result, CloseResult) and isinstance(result.outcome, Outcome)
    json.dumps(result.as_dict())


json_values = st.recursive(
    st.none() | st.booleans() | st.integers() | st.floats(allow_nan=False) | st.text(max_size=20),
    lambda children: st.lists(children, max_size=4) | st.dictionaries(st.text(max_size=10), children, max_size=4),
    max_leaves=20,
)
participant = st.fixed_dictionaries({}, optional={
    "id": st.one_of(st.just(CID), st.text(max_size=40), st.integers()),
    "state": st.sampled_from(["connected", "disconnected", "terminated", "alerting", "closed", "", None, 7]),
    "purpose": st.sampled_from(["agent", "customer", "acd", None, 3]),
    "type": st.sampled_from(["webmessaging", "sms", None, ["x"]]),
    "wrapupRequired": st.booleans() | st.none(),
    "wrapup": st.none() | json_values,
})
conversation = st.fixed_dictionaries({}, optional={
    "id": st.text(max_size=40), "participants": st.one_of(st.lists(participant, max_size=4), json_values)})
body = st.one_of(
    conversation.map(lambda c: json.dumps(c).encode()),
    json_values.map(lambda v: json.dumps(v).encode()),
    st.binary(max_size=200),
)
status = st.sampled_from([200, 200, 200, 202, 204, 301, 400, 401, 403, 404, 409, 429, 500, 503, 599])
headers = st.fixed_dictionaries({}, optional={
    "Retry-After": st.sampled_from(["0", "1", "-3", "soon", "99999", "Wed, 21 Oct 2015 07:28:00 GMT"]),
    "inin-ratelimit-allowed": st.sampled_from(["300", "0", "x"]),
    "inin-ratelimit-count": st.sampled_from(["1", "299", "400", ""]),
    "inin-ratelimit-reset": st.sampled_from(["1", "61", "-1", "nan"]),
    "Content-Type": st.sampled_from(["application/json", "text/html"]),
})
reply = st.tuples(status, headers, body)


@settings(max_examples=300, deadline=None, suppress_health_check=[HealthCheck.too_slow])
@given(replies=st.lists(reply, min_size=1, max_size=6), skip_get=st.booleans(),
       policy=st.sampled_from(["fail", "participants", "teardown"]))
def test_any_response_sequence_ends_well(replies: list[tuple[int, dict[str, str], bytes]], skip_get: bool,
                                         policy: str) -> None:
    options = CloseOptions().with_overrides({"policy": policy, "wrapup_code": "x"})
    options = options.for_sweep_candidate() if skip_get else options
    assert_well_behaved(replies, options)


def conversation_of_size(size: int) -> bytes:
    """A valid, closed MessageConversation padded to exactly ``size`` bytes."""
    body = {"id": CID, "participants": [{"id": CID, "purpose": "customer", "state": "disconnected",
                                         "type": "webmessaging"}], "pad": ""}
    base = len(json.dumps(body).encode())
    body["pad"] = "x" * (size - base)
    encoded = json.dumps(body).encode()
    assert len(encoded) == size
    return encoded


DOCUMENTED_LIMIT = 10 * 1024 * 1024  # README, Limits: responses over 10 MiB are refused


def test_huge_body_is_refused_not_buffered() -> None:
    closer, adapter = closer_over([(200, {}, conversation_of_size(DOCUMENTED_LIMIT + 1))])
    with pytest.raises(TransportError, match="larger than"):
        closer.close(CID)
    assert adapter.sent == 2  # the first read and its one retry: the limit refuses each, nothing else is sent


def test_body_at_the_limit_is_read() -> None:
    closer, _ = closer_over([(200, {}, conversation_of_size(DOCUMENTED_LIMIT))])
    assert closer.close(CID).outcome is Outcome.ALREADY_CLOSED


def test_html_error_page_from_a_proxy() -> None:
    closer, _ = closer_over([(502, {"Content-Type": "text/html"}, b"<html>Bad gateway</html>")])
    with pytest.raises(CloserError, match="502"):
        closer.close(CID)


def test_200_that_is_not_json_is_retryable_not_a_crash() -> None:
    closer, adapter = closer_over([(200, {}, b"<html>login page</html>")])
    with pytest.raises(ServerError, match="not JSON") as caught:
        closer.close(CID)
    assert isinstance(caught.value, RetryableError) and not isinstance(caught.value, PermanentError)
    assert adapter.sent == 2  # retried inline (max_attempts=2), then raised for a deferred retry


def test_conversation_without_participants_is_not_treated_as_closed() -> None:
    closer, _ = closer_over([(200, {}, json.dumps({"id": CID}).encode())])
    result = closer.close(CID)
    assert result.outcome is not Outcome.ALREADY_CLOSED


@pytest.mark.parametrize("participants", [True, 7, "x", {"a": 1}, [True, None, "x"]])
def test_malformed_participants_found_by_the_fuzzer(participants: object) -> None:
    """Hypothesis found ``{"participants": true}`` crashing the participant helpers; kept as a regression."""
    assert_well_behaved([(200, {}, json.dumps({"id": CID, "participants": participants}).encode())], CloseOptions())
