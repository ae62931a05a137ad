"""The headers a caller may set can only narrow what the worker allows (``worker.broker.message_bounds``), from a
table."""

from __future__ import annotations

from typing import Any

import pytest

from genesys_closer.worker.broker.message_bounds import (
    CLOSE_BOUNDS,
    Bounds,
    expiry_problem,
    header_problem,
    problem_with,
)

NOW = 1_800_000_000.0  # 2027-01-15T08:00:00Z
WORKER = Bounds(max_eta_seconds=10.0, time_limit_seconds=25.0, soft_time_limit_seconds=20.0, max_retries=100)


def iso(offset_seconds: float) -> str:
    from datetime import UTC, datetime

    return datetime.fromtimestamp(NOW + offset_seconds, UTC).isoformat()


@pytest.mark.parametrize(("headers", "refused_because"), [
    ({}, None),
    ({"eta": None, "expires": None, "timelimit": [None, None]}, None),  # what send_task sends by default
    ({"eta": iso(5)}, None),  # a countdown inside the safe window
    ({"eta": iso(-3600)}, None),  # an ETA in the past runs now
    ({"eta": iso(11)}, "safe window"),
    ({"eta": "tomorrow"}, "unreadable ETA"),
    ({"eta": 12345}, "unreadable ETA"),
    ({"expires": iso(-60)}, None),  # an expiry narrows: kept, and an expired close gets its outcome
    ({"expires": iso(3600)}, None),
    ({"expires": "never"}, "unreadable expires"),
    ({"expires": ["x"]}, "unreadable expires"),
    ({"timelimit": [25, 20]}, None),  # the worker's own limits, repeated
    ({"timelimit": [25.0, None]}, None),
    ({"timelimit": [None, 0.01]}, "soft_time_limit 0.01 set by the message"),  # the loop of issue 22
    ({"timelimit": [None, 19]}, "soft_time_limit"),  # narrower cuts a close between PATCH and confirmation
    ({"timelimit": [None, 3600]}, "soft_time_limit"),  # wider outlives the visibility timeout
    ({"timelimit": [1, None]}, "time_limit 1 set by the message"),
    ({"timelimit": [86400, None]}, "time_limit"),
    ({"timelimit": [True, None]}, "time_limit"),
    ({"timelimit": ["25", None]}, "time_limit"),
    ({"timelimit": [None]}, "unreadable time limits"),
    ({"timelimit": "25"}, "unreadable time limits"),
    ({"retries": 0}, None),  # what a first send carries
    ({"retries": 100}, None),  # the worker's own last retry
    ({"retries": 101}, "beyond the worker's TASK_MAX_RETRIES (100)"),  # would inflate the record's attempts
    ({"retries": -1000}, "not a count of retries"),  # would shrink every backoff to nothing
    ({"retries": "3"}, "not a count of retries"),
    ({"retries": True}, "not a count of retries"),
    ({"retries": 2.5}, "not a count of retries"),
])
def test_headers_only_narrow(headers: dict[str, Any], refused_because: str | None) -> None:
    problem = header_problem(headers, WORKER, NOW)
    if refused_because is None:
        assert problem is None
    else:
        assert problem is not None and refused_because in problem


def test_refusal_names_the_setting() -> None:
    problem = header_problem({"timelimit": [None, 0.01]}, WORKER, NOW)
    assert problem is not None and "TASK_SOFT_TIME_LIMIT_SECONDS" in problem and "20.0 s" in problem


def test_without_a_window_only_readability_is_checked() -> None:
    assert header_problem({"eta": iso(10**6)}, CLOSE_BOUNDS, NOW) is None
    assert header_problem({"eta": "x"}, CLOSE_BOUNDS, NOW) is not None


@pytest.mark.parametrize(("headers", "expired"), [
    ({}, False),
    ({"expires": iso(60)}, False),
    ({"expires": iso(60), "eta": iso(5)}, False),
    ({"expires": iso(-1)}, True),
    ({"expires": iso(2), "eta": iso(3)}, True),  # it would expire while it waits for its ETA
])
def test_a_close_that_cannot_run_in_time_is_known_at_receipt(headers: dict[str, Any], expired: bool) -> None:
    assert (expiry_problem(headers, NOW) is not None) is expired


def test_a_close_without_its_conversation_id_or_with_a_workflow_is_refused() -> None:
    """A close with no argument would fail in the pool with a traceback and no outcome; a link, errback, chain or
    chord would make a close publish other tasks: both are refused before the pool, like every other bound."""
    ok = [["3b47a74f-a827-4166-ae62-f6ba6d7268ae"], {}, {"callbacks": None, "errbacks": None, "chain": None}]
    assert problem_with(100, ok, {}, CLOSE_BOUNDS, NOW) is None
    assert problem_with(100, [[], {"conversation_id": "x"}, {}], {}, CLOSE_BOUNDS, NOW) is None
    assert "no conversation_id" in str(problem_with(100, [[], {}, {}], {}, CLOSE_BOUNDS, NOW))
    for field in ("callbacks", "errbacks", "chain", "chord"):
        linked = [["3b47a74f-a827-4166-ae62-f6ba6d7268ae"], {}, {field: [{"task": "worker.tasks.sweep"}]}]
        assert "not accepted" in str(problem_with(100, linked, {}, CLOSE_BOUNDS, NOW)), field
