"""worker.running.traceback_copies: billiard's copy of a traceback, with each code object's positions listed once,
and an ``Ignore`` copied without its frames."""

from __future__ import annotations

import pickle
import sys
from types import TracebackType

import pytest
from billiard.einfo import ExceptionInfo
from celery import Celery
from celery.app.trace import build_tracer
from celery.exceptions import Ignore, Retry

from genesys_closer.worker.running import traceback_copies

pytestmark = pytest.mark.skipif(sys.version_info < (3, 11), reason="billiard lists positions from Python 3.11")


def _raised() -> TracebackType:
    try:
        raise Ignore()
    except Ignore:
        tb = sys.exc_info()[2]
        assert tb is not None
        return tb


def test_a_copy_has_the_positions_billiard_would_list() -> None:
    traceback_copies.apply()
    traceback_copies.apply()  # idempotent: one wrapper, not two
    tb = _raised()
    copied = ExceptionInfo((Ignore, Ignore(), tb)).tb
    assert list(copied.tb_frame.f_code.co_positions()) == list(tb.tb_frame.f_code.co_positions())
    assert copied.tb_frame.f_code.co_name == "_raised" and copied.tb_lineno == tb.tb_lineno
    restored = pickle.loads(pickle.dumps(copied))  # what crosses the pool's pipe
    assert list(restored.tb_frame.f_code.co_positions()) == list(tb.tb_frame.f_code.co_positions())


def test_celerys_tracer_reads_the_cache_for_every_copy_of_the_same_frames() -> None:
    traceback_copies.apply()
    app = Celery(set_as_current=False)

    @app.task(bind=True)  # type: ignore[untyped-decorator]
    def fails(self: object) -> None:
        raise ValueError("a failure, as a Retry or any exception is copied")

    trace = build_tracer(fails.name, fails, app=app, eager=False, store_errors=False)
    trace("first", (), {}, {"delivery_info": {}})
    before = traceback_copies.positions_of.cache_info()
    for number in range(5):
        assert trace(f"t-{number}", (), {}, {"delivery_info": {}}) is not None
    after = traceback_copies.positions_of.cache_info()
    assert after.misses == before.misses  # the same code objects: listed once
    assert after.hits >= before.hits + 5 * 2  # at least one copy per failure, at least two frames each


def _traced(exception: BaseException) -> ExceptionInfo:
    """The copy Celery's tracer makes (and sends to the worker's main process) of a task that raises ``exception``."""
    traceback_copies.apply()
    app = Celery(set_as_current=False)

    @app.task(bind=True)  # type: ignore[untyped-decorator]
    def raises(self: object) -> None:
        raise exception

    result = build_tracer(raises.name, raises, app=app, eager=False, store_errors=False)(
        "t-1", (), {}, {"delivery_info": {}})
    assert isinstance(result.retval, ExceptionInfo)
    return result.retval


def test_an_ignore_reaches_the_main_process_as_an_ignore_without_its_frames() -> None:
    copy = _traced(Ignore("waiting for a batched read"))
    assert copy.tb is None and "Ignore" in copy.traceback
    piped = pickle.loads(pickle.dumps(copy))  # as billiard sends a task's result to the worker's main process
    exc = piped.exception.exc if hasattr(piped.exception, "exc") else piped.exception
    assert isinstance(exc, Ignore)  # what Request.on_failure checks to acknowledge the message
    assert len(pickle.dumps(copy)) < 2_000


def test_a_failure_keeps_its_whole_traceback() -> None:
    copy = _traced(ValueError("a real failure"))
    assert copy.tb is not None and "raise exception" in copy.traceback
    assert "ValueError: a real failure" in copy.traceback


def test_a_retry_keeps_its_traceback_as_text_without_its_frames() -> None:
    try:
        raise Retry("waiting for its turn at the rate limit", when=1)
    except Retry as exc:
        copy = traceback_copies.FramelessCopy()
        assert copy.exception.exc is exc
    assert copy.tb is None and "raise Retry" in copy.traceback and "waiting for its turn" in copy.traceback
    assert isinstance(pickle.loads(pickle.dumps(copy)).exception, Retry)
