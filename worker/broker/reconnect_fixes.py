"""Five defects of kombu 5.7, Celery 5.7 and billiard 4.3 that make a worker exit, or lose a message, after a Redis
outage, fixed where they are.

``apply()`` installs all five (idempotent); ``worker.app.build_app`` calls it, so workers, beat, Flower and the
liveness probe run with them. ``tests/worker/test_reconnect_fixes.py`` reproduces each error with the libraries'
own code and checks its fix; ``tests/chaos/test_redis_flap.py`` flaps Redis under real workers. No released version
has the fixes (kombu 5.7.0, Celery 5.7.0 and billiard 4.3.2 are the newest, and Celery 5.7 requires kombu 5.7).

**1. kombu: a channel whose transport was detached raises AttributeError** (issue 22; the same AttributeError as
celery/kombu #582 and #970, whose fixes did not cover this path). Redis stops while the task channel holds
unacknowledged deliveries with a BRPOP in flight, and the consumer first hears of it elsewhere (the pidbox channel,
the restore timer: celery/celery #10205 shows that trigger). Celery's ``on_connection_error_after_connected`` calls
``Connection.collect()``: closing the task channel starts by reading the BRPOP reply, which raises a connection
error before the channel is marked closed; closing the pidbox channel raises too, which ends
``Transport.close_connection`` before it reaches the task channel. ``collect()`` swallows both and detaches the
transport (``transport.client = None``) although that channel still uses it. Celery then calls
``Connection.close()``, which closes the task channel again: its pool is dropped and the unacknowledged deliveries
are restored through a new one, and ``Channel._connparams`` reads ``self.connection.client.hostname``: AttributeError.
Only connection and channel errors are ignored there, so Celery reports "Unrecoverable error" and the worker exits.
A late-acknowledged task that finishes after the loss meets the same AttributeError when it acknowledges.
Both are connection errors in fact (the connection this channel was made for is closed), and the fix says so:
``_connparams`` of a detached channel raises redis-py's ``ConnectionError``, one of the transport's
``connection_errors``, which every caller already handles. The close goes on and the consumer reconnects; an
acknowledgement that cannot be sent is logged as a lost ack, and its message stays in kombu's ``unacked`` hash in
Redis until it is restored (the visibility timeout, or the recovery check after a Redis restart). The Sentinel
channel shares ``_connparams``.

**2. Celery with kombu 5.7: a pool process that exited during the outage stops the worker when it reconnects**
(celery/celery #9250, re-opened by kombu #2623). On a connection loss Celery terminates the running late-ack tasks
(``worker_cancel_long_running_tasks_on_connection_loss``), and time limits may end others; a pool process whose exit
was seen but that is not reaped yet keeps its place in the pool with its exit fd cleared (``_sentinel_poll =
None``). On reconnecting, the pool registers every process with the event loop again, and ``hub.add_reader(None)``
raises. Celery's ``iterate_file_descriptors_safely`` exists to drop such stale fds with a warning, but it catches
``OSError`` and ``AttributeError``, and kombu 5.7 changed ``fileno(None)`` from AttributeError to ``ValueError``
(kombu #2623 assumed Celery caught ValueError; Celery 5.7 does not). The fix lets it treat ValueError, which is
what ``fileno`` raises for any unusable descriptor (None, negative), as the stale fd it is; the pool's own
maintenance then reaps the process and starts its replacement, as it does for any exited process.

**3. billiard: a soft time limit that arrives while a pool process sends its result corrupts the result pipe.**
While the consumer reconnects, the worker's event loop does not run, so nobody reads the pool's result pipes: a pool
process whose result is larger than the pipe's buffer (a failure's pickled traceback easily is) blocks in the
middle of writing it for the whole outage. When the loop runs again, the task's soft time limit fires (SIGUSR1
raises SoftTimeLimitExceeded inside the write), and the pool process, as billiard's ``Worker.workloop`` does for any
error while sending, sends a second result after the half-written first one. The parent reads the first message's
length over both and unpickles garbage (seen as ``UnicodeDecodeError`` from ``AsynPool._recv_message``): an
"Unrecoverable error" again. A soft time limit is meant to interrupt the task, and once its result is being sent
the task is over: the fix ignores SIGUSR1 while a pool process sends a READY message, so the message always goes
out whole. (The hard time limit still kills a stuck process; billiard discards the pipes of a process killed
mid-message.)

**4. Celery: a late-ack task cancelled on a connection loss has its message acknowledged, so nobody runs it again.**
On a connection loss Celery terminates the running late-ack tasks and means to leave their messages unacknowledged
for redelivery: ``Request.cancel`` kills the pool process, then ``_announce_cancelled`` sends a ``task-cancelled``
event, records a retry and only then sets ``_already_cancelled``, which tells ``on_failure`` to leave the message
alone. But the connection is lost, which is why the task is cancelled: the event cannot be sent, the exception
ends ``_announce_cancelled`` before the flag is set (Celery logs "Failed to cancel active request"), and when the
killed process is reported, ``on_failure`` takes the termination for a revoke and acknowledges the message. The
close neither ran nor stays in the broker. Its standalone pending entry (or its batch item) is re-sent by the
recovery check only if the check looks after that acknowledgement; one that looked before saw the message still
held (kombu's ``unacked`` hash) and left it to the broker, so the close waited for the stall window
(``BATCH_STALL_SECONDS``, 300 s by default). Seen in ``tests/chaos/test_chaos.py::test_redis_restart_mid_batch``
on a loaded machine. The fix marks the request cancelled first and treats an announcement the lost connection
refuses as what it is (logged): the message stays unacknowledged, and the recovery check's restore after a Redis
restart, or the visibility timeout, delivers it again.

**5. Celery: a pool process that exits while the parent holds half of its result stops the worker.** The parent
reads a result pipe without blocking, so a result larger than the pipe's buffer (64 KiB: a failure's chained
traceback after a Redis outage easily is) arrives in parts; between them the event loop keeps the half-read
message in a generator registered as that pipe's reader. If the process exits before the rest is read (after an
outage Celery's cancel on connection loss and a soft time limit reach pool processes whose tasks already ended, and
end them while they wait for the parent to take their last result), ``AsynPool.process_flush_queues`` reads the
pipe from where the generator stopped, takes the middle of that message for a new one and raises
``UnpicklingError`` ("invalid load key"): "Unrecoverable error", the worker exits. Seen once in about twenty runs of
``tests/chaos/test_redis_flap.py`` on a loaded machine. The fix lets the half-read message finish first (its
generator reads the rest, which the process wrote whole, see fix 3) and delivers it; then the flush goes on at a
message boundary. A rest that is not in the pipe (the process was killed mid-message; an exited process wrote all
it will, so nothing is waited for) ends the flush of that process, as an unreadable pipe does in Celery's own code;
its job is then reported lost like any job of a killed process. A reader registered before the first byte of a
message (Celery registers one whenever a read would block) holds no half, and the flush reads on as before.
"""

from __future__ import annotations

import functools
import logging
import select
import signal
import threading
from types import GeneratorType
from typing import Any

import redis.exceptions
from billiard import pool as billiard_pool  # type: ignore[import-untyped]
from billiard import queues as billiard_queues
from celery.concurrency import asynpool
from celery.worker import request as celery_request
from kombu.exceptions import OperationalError
from kombu.transport import redis as kombu_redis

log = logging.getLogger("genesys_closer.worker")
# What a lost broker or result-backend connection raises from an event or a backend write.
ANNOUNCEMENT_ERRORS = (redis.exceptions.ConnectionError, redis.exceptions.TimeoutError, OperationalError, OSError)

_PATCHED = "_genesys_closer_reconnect_fix"  # on every library function replaced here and in its sibling modules


def marked(function: Any) -> Any:
    setattr(function, _PATCHED, True)
    return function


def _raise_when_detached(connparams: Any) -> Any:
    @functools.wraps(connparams)
    def checked(self: Any, *args: Any, **kwargs: Any) -> Any:
        transport = self.connection
        if transport is None or transport.client is None:
            raise redis.exceptions.ConnectionError(
                "the broker connection of this channel is closed (kombu detached its transport)")
        return connparams(self, *args, **kwargs)

    return marked(checked)


class StaleFileDescriptor(OSError):
    """A descriptor ``fileno`` refused (ValueError): handled by Celery as the stale fd it is."""


def _value_error_is_stale(iterate: Any) -> Any:
    @functools.wraps(iterate)
    def tolerant(fds_iter: Any, source_data: Any, hub_method: Any, *args: Any, **kwargs: Any) -> Any:
        def add(fd: Any, *hub_args: Any, **hub_kwargs: Any) -> Any:
            try:
                return hub_method(fd, *hub_args, **hub_kwargs)
            except ValueError as exc:
                raise StaleFileDescriptor(str(exc)) from exc

        return iterate(fds_iter, source_data, add, *args, **kwargs)

    return marked(tolerant)


def _result_sent_whole(put: Any) -> Any:
    soft_timeout = billiard_pool.SIG_SOFT_TIMEOUT

    @functools.wraps(put)
    def send(self: Any, obj: Any) -> Any:
        is_result = isinstance(obj, tuple) and bool(obj) and obj[0] == billiard_pool.READY
        if not is_result or soft_timeout is None or threading.current_thread() is not threading.main_thread():
            return put(self, obj)
        previous = signal.getsignal(soft_timeout)
        if previous is None:  # a handler not set from Python: not billiard's soft time limit, leave it alone
            return put(self, obj)
        signal.signal(soft_timeout, signal.SIG_IGN)  # the task is over: a soft time limit now is void
        try:
            return put(self, obj)
        finally:
            signal.signal(soft_timeout, previous)

    return marked(send)


def _cancelled_before_announced(announce: Any) -> Any:
    @functools.wraps(announce)
    def announced(self: Any, *args: Any, **kwargs: Any) -> Any:
        self._already_cancelled = True  # first: whatever fails below, on_failure leaves the message for redelivery
        try:
            return announce(self, *args, **kwargs)
        except ANNOUNCEMENT_ERRORS as exc:
            log.warning("task %s cancelled after the broker connection was lost; its cancellation could not be "
                        "announced (%s): its message stays unacknowledged and is delivered again", self.id,
                        type(exc).__name__)
            return None

    return marked(announced)


def _partial_result_reader(pool: Any, proc: Any) -> Any:
    """The generator holding a half-read result of ``proc``, if the event loop has one.

    Celery registers its reader generator whenever a read would block, also before the first byte of a message (then
    it is at a message boundary, and the flush may read on); only one that has read part of a frame holds a half."""
    hub = getattr(getattr(pool, "_result_handler", None), "_hub", None)
    reader = getattr(getattr(proc, "outq", None), "_reader", None)
    if hub is None or reader is None or reader.closed:
        return None
    try:
        entry = hub.readers.get(reader.fileno())
    except OSError:
        return None
    callback = entry[0] if isinstance(entry, tuple) and entry else None
    if not isinstance(callback, GeneratorType) or callback.gi_frame is None:
        return None
    header_bytes_read = callback.gi_frame.f_locals.get("Hr", 0)  # ResultHandler._recv_message's own counter
    return callback if isinstance(header_bytes_read, int) and header_bytes_read > 0 else None


def _finish_partial_result(reader: Any, partial: Any) -> bool:
    """Let the half-read message finish (its generator delivers it); False if its rest is not there.

    The flush is for a process that has exited, so whatever it wrote is in the pipe already: nothing is waited for."""
    while True:
        readable, _, _ = select.select([reader], [], [], 0)
        if not readable:
            return False
        try:
            next(partial)
        except StopIteration:
            return True
        except (OSError, EOFError):
            return False


def _partial_result_first(flush_queues: Any) -> Any:
    @functools.wraps(flush_queues)
    def flush_at_boundary(self: Any, proc: Any) -> Any:
        partial = _partial_result_reader(self, proc)
        if partial is not None and not _finish_partial_result(proc.outq._reader, partial):
            log.warning("pool process %s exited in the middle of sending a result that could not be read whole; "
                        "its pipe is not read further (its task is reported as lost)", getattr(proc, "pid", "?"))
            return None
        return flush_queues(self, proc)

    return marked(flush_at_boundary)


def apply() -> None:
    """Install the five fixes (idempotent). Called before the pool forks, so its processes inherit them."""
    if not applied(kombu_redis.Channel._connparams):
        kombu_redis.Channel._connparams = _raise_when_detached(kombu_redis.Channel._connparams)  # type: ignore[method-assign]
    if not applied(asynpool.iterate_file_descriptors_safely):
        asynpool.iterate_file_descriptors_safely = _value_error_is_stale(asynpool.iterate_file_descriptors_safely)
    if not applied(billiard_queues._SimpleQueue.put):
        billiard_queues._SimpleQueue.put = _result_sent_whole(billiard_queues._SimpleQueue.put)
    if not applied(celery_request.Request._announce_cancelled):
        celery_request.Request._announce_cancelled = _cancelled_before_announced(
            celery_request.Request._announce_cancelled)
    if not applied(asynpool.AsynPool.process_flush_queues):
        asynpool.AsynPool.process_flush_queues = _partial_result_first(
            asynpool.AsynPool.process_flush_queues)


def applied(function: Any) -> bool:
    return bool(getattr(function, _PATCHED, False))
