"""worker.running.traceback_copies: billiard's copy of a traceback, with each code object's positions listed once."""

from __future__ import annotations

import pickle
import sys
from types import TracebackType

import pytest
from billiard.einfo import ExceptionInfo
from celery import Celery
from celery.app.trace import build_tracer
from celery.exceptions import Ignore

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


def test_celerys_tracer_reads_the_cache_for_every_ignore_after_the_first() -> None:
    traceback_copies.apply()
    app = Celery(set_as_current=False)

    @app.task(bind=True)  # type: ignore[untyped-decorator]
    def waits(self: object) -> None:
        raise Ignore() from None

    trace = build_tracer(waits.name, waits, app=app, eager=False, store_errors=False)
    trace("first", (), {}, {"delivery_info": {}})
    before = traceback_copies.positions_of.cache_info()
    for number in range(5):
        assert trace(f"t-{number}", (), {}, {"delivery_info": {}}) is not None
    after = traceback_copies.positions_of.cache_info()
    assert after.misses == before.misses  # the same code objects: listed once
    assert after.hits >= before.hits + 5 * 2 * 2  # two copies per Ignore, at least two frames each
