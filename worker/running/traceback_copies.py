"""A close that waits for a batched read cost Celery 1.7 ms, nearly all of it copying a traceback nobody reads.

A close task whose item goes to wait raises Celery's ``Ignore`` (``worker.ops.task_events``). Celery's tracer then
makes two ``billiard.einfo.ExceptionInfo`` copies of the traceback (one for the trace, one in ``handle_ignore``),
and billiard copies each frame's code object, listing its ``co_positions()`` (one entry per bytecode instruction,
Python 3.11+). For Celery's own ``trace_task``, a function of some 300 lines, that list is rebuilt on every copy:
measured, 0.58 of the 1.0 ms that raising ``Ignore`` through Celery's tracer costs (a task that returns costs
0.02 ms), and a batch item waits twice (pre-check and confirmation).

A code object never changes, so its positions are listed once per code object (an LRU cache, bounded) and billiard
copies them from there: the same values (this serves every traceback copy: a ``Retry``, a failure).

An ``Ignore``'s copies go further than that, for nothing: the tracer logs an ignored task without its traceback, and
sends one copy through the pool's pipe to the worker's main process, which reads only its exception (to acknowledge
the message). Pickled with every frame's positions, that copy is tens of kilobytes: pickling it, reading it from
the pipe and unpickling it took about an eighth of a worker's CPU in a profile of 1,000 batch closes. The tracer's
copy of an ``Ignore`` is therefore made without the frames (``FramelessCopy``: the exception and its one-line
description), and so is a ``Retry``'s (a close waiting for its turn at the rate limit retries: the main process
reads its exception and its traceback as text, which it keeps); any other exception is copied whole, as before.

``apply()`` installs both (idempotent); ``worker.app.build_app`` calls it. ``tests/worker/test_traceback_copies.py``
checks that the copies are equal to billiard's own, that a second copy of the same frames reads the cache, and that
an ``Ignore`` reaches the main process as an ``Ignore`` while a failure keeps its traceback.
"""

from __future__ import annotations

import functools
import sys
import traceback
from collections.abc import Iterator
from types import CodeType, TracebackType
from typing import Any

from billiard import einfo  # type: ignore[import-untyped]
from celery.app import trace as celery_trace
from celery.exceptions import Ignore, Retry

from genesys_closer.worker.broker.reconnect_fixes import applied, marked

POSITIONS_CACHED = 1024  # code objects: each entry holds its positions (a tuple), not the code's frames


@functools.lru_cache(maxsize=POSITIONS_CACHED)
def positions_of(code: CodeType) -> tuple[tuple[int | None, int | None, int | None, int | None], ...]:
    return tuple(code.co_positions())


class _CachedPositions:
    """``code`` as billiard's ``_Code`` reads it, with ``co_positions()`` served from the cache."""

    __slots__ = ("_code",)

    def __init__(self, code: CodeType) -> None:
        self._code = code

    def __getattr__(self, name: str) -> Any:
        return getattr(self._code, name)

    def co_positions(self) -> Iterator[tuple[int | None, int | None, int | None, int | None]]:
        return iter(positions_of(self._code))


class FramelessCopy(einfo.ExceptionInfo):  # type: ignore[misc]
    """billiard's ``ExceptionInfo``, without the frames when the exception is Celery's ``Ignore`` or ``Retry``: an
    ``Ignore`` with its one-line description for a traceback, a ``Retry`` with its whole traceback as text (the
    ``task-retried`` event and the result backend show it)."""

    def __init__(self, exc_info: tuple[type[BaseException], BaseException, TracebackType | None] | None = None,
                 internal: bool = False) -> None:
        current = exc_info or sys.exc_info()
        if not isinstance(current[1], Ignore | Retry):
            super().__init__(exc_info, internal)
            return
        exception, tb = current[1], current[2]
        self.type = current[0]
        self.tb = None
        self.traceback = "".join(traceback.format_exception_only(self.type, exception) if isinstance(exception, Ignore)
                                 else traceback.format_exception(self.type, exception, tb))
        del tb
        self.internal = internal
        self.exception = einfo.ExceptionWithTraceback(exception, self.traceback)


def apply() -> None:
    celery_trace.ExceptionInfo = FramelessCopy  # the name the tracer and its TraceInfo look up when they copy
    code_copy: Any = einfo._Code
    if sys.version_info < (3, 11) or applied(code_copy.__init__):
        return  # before 3.11 billiard reads no positions
    original = code_copy.__init__

    @marked
    def init(self: Any, code: CodeType) -> None:
        original(self, _CachedPositions(code) if isinstance(code, CodeType) else code)

    code_copy.__init__ = init
