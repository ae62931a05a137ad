"""worker/broker/reconnect_fixes.py: each defect reproduced with the libraries' own code, then fixed.

kombu's Redis transport against a real redis-server stopped mid-delivery, with the channels of a Celery worker: the
task consumer on the connection's default channel, holding an unacknowledged delivery with its next BRPOP in flight
(the worker's event loop sends it as soon as a delivery is taken), and a second channel consuming a fanout queue
(the pidbox, for remote control). Then Redis stops, and the connection is cleaned up exactly as Celery's
``Consumer.on_connection_error_after_connected`` does: ``collect()``, then ``close()``.

Celery's prefork pool: a pool process whose exit was seen but that is not reaped yet, registered with the event
loop again as the pool does when the consumer reconnects.

Celery's request cancelled on a connection loss, its ``task-cancelled`` event going to the lost broker (the whole
path, real worker and Redis restart, is ``tests/chaos/test_cancelled_on_restart.py``).

Celery's result reader holding half of a large result when its pool process exits, then the pool flushing that
process's pipe (``AsynPool.process_flush_queues``, as ``_join_exited_workers`` does).
"""

from __future__ import annotations

import os
import pickle
import struct
import subprocess
import sys
from collections.abc import Iterator
from unittest import mock

import pytest
import redis
from billiard.pool import READY  # type: ignore[import-untyped]
from billiard.queues import _SimpleQueue  # type: ignore[import-untyped]
from billiard.reduction import ForkingPickler  # type: ignore[import-untyped]
from celery.concurrency import asynpool
from celery.worker.request import Request
from kombu import Connection, Consumer, Exchange, Producer, Queue
from kombu.asynchronous import Hub
from kombu.message import Message
from kombu.transport import redis as kombu_redis

from genesys_closer.worker.broker import reconnect_fixes
from tests.services import RedisServer

TASKS = Queue("tasks", Exchange("tasks", type="direct"), routing_key="tasks")
PIDBOX = Queue("pidbox", Exchange("pidbox", type="fanout"), auto_delete=True)


def unpatched(function: object) -> object:
    """The library's own function, whether or not this process has applied the fixes already."""
    return getattr(function, "__wrapped__", function)


def kombu_connparams() -> object:
    return unpatched(kombu_redis.Channel._connparams)


def lose_redis_with_a_delivery_in_flight(server: RedisServer) -> tuple[Connection, Message]:
    connection = Connection(server.url, transport_options={"visibility_timeout": 60})
    connection.connect()
    delivered: list[Message] = []
    Consumer(connection.default_channel, [TASKS], callbacks=[lambda _body, message: delivered.append(message)],
             accept=["json"]).consume()
    Consumer(connection.channel(), [PIDBOX], callbacks=[lambda _body, _message: None], accept=["json"]).consume()
    Producer(connection.channel()).publish({"task": 1}, exchange=TASKS.exchange, routing_key="tasks",
                                          declare=[TASKS], serializer="json")
    while not delivered:
        connection.drain_events(timeout=10)
    channel = connection.default_channel
    assert len(channel.qos._delivered) == 1  # taken, not acknowledged (late ack)
    channel._brpop_start()  # the event loop's next BRPOP, in flight when Redis goes away
    server.stop()
    connection.collect(socket_timeout=1)  # Celery's cleanup after a connection error, in its order
    return connection, delivered[0]


def test_without_the_fix_kombu_raises_attribute_error_from_connparams(private_redis: RedisServer) -> None:
    with mock.patch.object(kombu_redis.Channel, "_connparams", kombu_connparams()):
        connection, _ = lose_redis_with_a_delivery_in_flight(private_redis)
        with pytest.raises(AttributeError, match="'NoneType' object has no attribute 'hostname'") as raised:
            connection.close()
    assert any(frame.name == "_connparams" for frame in raised.traceback)
    assert any(frame.name == "restore_unacked" for frame in raised.traceback)


def test_with_the_fix_the_close_goes_on_and_nothing_is_lost(private_redis: RedisServer) -> None:
    reconnect_fixes.apply()
    reconnect_fixes.apply()  # idempotent: one wrapper
    assert reconnect_fixes.applied(kombu_redis.Channel._connparams)
    assert getattr(kombu_redis.Channel._connparams, "__wrapped__", None) is kombu_connparams()
    connection, message = lose_redis_with_a_delivery_in_flight(private_redis)
    connection.close()  # the consumer can reconnect
    private_redis.start()
    with pytest.raises(connection.connection_errors):  # a lost ack (Celery logs it), not a crash
        message.ack()
    # the delivery is still in kombu's unacked hash: restored later (visibility timeout, or the recovery check)
    assert redis.Redis.from_url(private_redis.url).hlen("unacked") == 1


def test_a_working_channel_is_unchanged(private_redis: RedisServer) -> None:
    reconnect_fixes.apply()
    with Connection(private_redis.url) as connection:
        channel = connection.default_channel
        params = channel._connparams()
        assert params["port"] == private_redis.port and params["host"] == "127.0.0.1"
        Producer(channel).publish({"n": 1}, exchange=TASKS.exchange, routing_key="tasks", declare=[TASKS],
                                  serializer="json")
        message = connection.SimpleQueue(TASKS).get(timeout=5)
        message.ack()


class ExitedPoolProcess:
    """A pool process whose exit the pool has seen (``_untrack_child_process`` cleared its fd) and that is not
    reaped yet: what Celery's prefork pool holds after tasks were terminated on a connection loss."""

    _sentinel_poll = None


class PoolEvents:
    def _event_process_exit(self, hub: Hub, proc: object) -> None:
        raise AssertionError("never called: the process is not watched")


def track_exited_process_on_reconnect() -> None:
    """What ``AsynPool.register_with_event_loop`` does for each pool process when the consumer reconnects."""
    hub = Hub()
    try:
        asynpool.AsynPool._track_child_process(PoolEvents(), ExitedPoolProcess(), hub)
    finally:
        hub.close()


def test_without_the_fix_an_exited_pool_process_stops_the_worker_on_reconnect() -> None:
    own = unpatched(asynpool.iterate_file_descriptors_safely)
    with mock.patch.object(asynpool, "iterate_file_descriptors_safely", own), \
            pytest.raises(ValueError, match="file descriptor is None"):
        track_exited_process_on_reconnect()


def test_with_the_fix_an_exited_pool_process_is_a_stale_fd(caplog: pytest.LogCaptureFixture) -> None:
    reconnect_fixes.apply()
    reconnect_fixes.apply()
    assert reconnect_fixes.applied(asynpool.iterate_file_descriptors_safely)
    track_exited_process_on_reconnect()  # dropped with Celery's own warning; the pool reaps and replaces it
    assert "Encountered error when accessing fd None" in caplog.text


def test_live_descriptors_are_still_registered() -> None:
    reconnect_fixes.apply()
    hub = Hub()
    read_end, write_end = os.pipe()
    try:
        asynpool.iterate_file_descriptors_safely([read_end], None, hub.add_reader, lambda: None)
        assert read_end in hub.readers
    finally:
        hub.close()
        os.close(read_end)
        os.close(write_end)


# A pool process sending a result larger than the pipe's buffer while nobody reads (the consumer reconnecting),
# then its soft time limit (SIGUSR1), exactly as billiard's Worker.workloop sends and handles it; the parent reads.
RESULT_PIPE_SCRIPT = """
import os, signal, sys, time
from billiard.pool import READY, soft_timeout_sighandler
from billiard.queues import _SimpleQueue
if sys.argv[1] == "fixed":
    from genesys_closer.worker.broker import reconnect_fixes
    reconnect_fixes.apply()
outq = _SimpleQueue()
big = (READY, (1, 0, (False, "x" * 1_000_000), None))
pid = os.fork()
if pid == 0:  # the pool process
    signal.signal(signal.SIGUSR1, soft_timeout_sighandler)
    try:
        outq.put(big)
    except Exception:  # what Worker.workloop does when sending fails: send a small error result instead
        outq.put((READY, (1, 0, (False, "MaybeEncodingError"), None)))
    os._exit(0)
outq._writer.close()
deadline = time.monotonic() + 30
while "pipe_write" not in open(f"/proc/{pid}/wchan").read():  # blocked in the middle of its result
    if time.monotonic() > deadline:
        os.kill(pid, signal.SIGKILL)
        sys.exit("the pool process never blocked writing its result")
    time.sleep(0.01)
os.kill(pid, signal.SIGUSR1)  # the soft time limit
received = []
try:
    while True:
        received.append(outq.get())
except EOFError:
    pass
except Exception as exc:
    received.append(repr(exc))
os.waitpid(pid, 0)
print("intact" if received == [big] else "corrupted")
"""


def result_pipe(mode: str) -> str:
    run = subprocess.run([sys.executable, "-c", RESULT_PIPE_SCRIPT, mode], capture_output=True, text=True,
                         timeout=60, check=False)
    assert run.returncode == 0, run.stderr
    return run.stdout.strip()


def test_without_the_fix_a_soft_time_limit_mid_result_corrupts_the_pipe() -> None:
    assert result_pipe("unpatched") == "corrupted"


def test_with_the_fix_the_result_goes_out_whole() -> None:
    assert result_pipe("fixed") == "intact"


class CancelledOnConnectionLoss:
    """What ``Request._announce_cancelled`` touches of a request cancelled because the broker connection is lost:
    its id, its flag, and an event sender whose connection is gone (what Celery's ``send_event`` raises then)."""

    def __init__(self) -> None:
        self.id = "6b1f0c1e-0000-4000-8000-000000000001"
        self._already_cancelled = False

    def send_event(self, *_args: object, **_kwargs: object) -> None:
        raise redis.ConnectionError("Connection closed by server.")


def test_without_the_fix_a_cancelled_request_is_not_marked_cancelled() -> None:
    request = CancelledOnConnectionLoss()
    with pytest.raises(redis.ConnectionError):
        unpatched(Request._announce_cancelled)(request)  # type: ignore[operator]
    assert request._already_cancelled is False  # on_failure will take the termination for a revoke and ack


def test_with_the_fix_a_cancelled_request_keeps_its_message(caplog: pytest.LogCaptureFixture) -> None:
    reconnect_fixes.apply()
    request = CancelledOnConnectionLoss()
    Request._announce_cancelled(request)  # type: ignore[arg-type]
    assert request._already_cancelled is True  # on_failure leaves the message unacknowledged: it is delivered again
    assert "delivered again" in caplog.text


# A result larger than the pipe's buffer (64 KiB): a failure with a long traceback. Its bytes repeat a frame header
# (length 5) followed by bytes that are no pickle, so a reader that starts in its middle meets what the worker exit
# showed ("invalid load key, '\x01'").
OUT_OF_STEP = b"\x00\x00\x00\x05" + b"\x01" * 12
BIG_RESULT = (READY, (7, 0, (False, OUT_OF_STEP * 6_000), None))
SMALL_RESULT = (READY, (8, 0, (True, "closed"), None))


def framed(obj: object) -> bytes:
    body = bytes(ForkingPickler.dumps(obj))
    return struct.pack("!i", len(body)) + body


class ParentSide:
    """What ``ResultHandler._recv_message`` and ``AsynPool.process_flush_queues`` use of the prefork pool's parent:
    a real event loop (kombu's Hub), the pool process's real billiard result pipe (read without blocking, as the
    pool does) and the result callback. It stands for the pool, its result handler and the exited process."""

    def __init__(self) -> None:
        self.hub = Hub()
        self._hub = self.hub
        self._result_handler = self
        self._state = 0  # billiard's RUN
        self.pid = 4242
        self.outq = _SimpleQueue()
        os.set_blocking(self.outq._reader.fileno(), False)
        self.received: list[object] = []

    def on_state_change(self, message: object) -> None:
        self.received.append(message)

    def handle_event(self, *_args: object) -> None:  # what the reader registers again after a whole message
        raise AssertionError("the event loop does not run in this test")

    def exit_with_half_a_result_read(self, rest_written: bool) -> None:
        """The pool process writes the first part of BIG_RESULT; the parent's reader takes it and waits for the rest
        (its generator registered as the pipe's reader, as ``on_result_readable`` does). The process then writes
        the rest and SMALL_RESULT (or, killed mid-message, nothing more) and exits."""
        data, fd = framed(BIG_RESULT), self.outq._reader.fileno()
        split = data.index(OUT_OF_STEP, 40_000)  # the rest starts with what looks like a frame header
        os.write(self.outq._writer.fileno(), data[:split])
        partial = asynpool.ResultHandler._recv_message(self, self.hub.add_reader, fd, self.on_state_change)
        next(partial)  # reads all there is, then waits for more
        assert not self.outq._reader.poll(0)
        self.hub.add_reader(fd, partial)
        if rest_written:
            os.write(self.outq._writer.fileno(), data[split:] + framed(SMALL_RESULT))
        self.outq._writer.close()

    def close(self) -> None:
        self.hub.close()
        self.outq._reader.close()


@pytest.fixture
def parent_side() -> Iterator[ParentSide]:
    side = ParentSide()
    try:
        yield side
    finally:
        side.close()


def test_without_the_fix_flushing_an_exited_process_reads_its_pipe_out_of_step(parent_side: ParentSide) -> None:
    parent_side.exit_with_half_a_result_read(rest_written=True)
    with pytest.raises(pickle.UnpicklingError, match="invalid load key"):  # "Unrecoverable error": the worker exits
        unpatched(asynpool.AsynPool.process_flush_queues)(parent_side, parent_side)  # type: ignore[operator]


def test_with_the_fix_the_half_read_result_is_finished_first(parent_side: ParentSide) -> None:
    reconnect_fixes.apply()
    parent_side.exit_with_half_a_result_read(rest_written=True)
    asynpool.AsynPool.process_flush_queues(parent_side, parent_side)  # type: ignore[arg-type]
    assert parent_side.received == [BIG_RESULT, SMALL_RESULT]  # both, whole, in order: no result is lost


def test_with_the_fix_a_rest_that_never_comes_ends_the_flush(parent_side: ParentSide,
                                                             caplog: pytest.LogCaptureFixture) -> None:
    reconnect_fixes.apply()
    parent_side.exit_with_half_a_result_read(rest_written=False)  # killed in the middle of writing it
    asynpool.AsynPool.process_flush_queues(parent_side, parent_side)  # type: ignore[arg-type]
    assert parent_side.received == []
    assert "could not be read whole" in caplog.text


def test_with_the_fix_a_flush_without_a_half_read_result_is_unchanged(parent_side: ParentSide) -> None:
    reconnect_fixes.apply()
    os.write(parent_side.outq._writer.fileno(), framed(SMALL_RESULT) + framed(SMALL_RESULT))
    parent_side.outq._writer.close()
    asynpool.AsynPool.process_flush_queues(parent_side, parent_side)  # type: ignore[arg-type]
    assert parent_side.received == [SMALL_RESULT, SMALL_RESULT]


def test_with_the_fix_a_reader_waiting_at_a_message_boundary_is_no_half_result(
        parent_side: ParentSide, caplog: pytest.LogCaptureFixture) -> None:
    """Celery registers its reader also when a read would block before the first byte of a message: the pipe is then
    at a boundary, and the flush reads on at once (seen in the flap test: a 2 s wait per exited process, before)."""
    reconnect_fixes.apply()
    fd = parent_side.outq._reader.fileno()
    waiting = asynpool.ResultHandler._recv_message(parent_side, parent_side.hub.add_reader, fd,
                                                   parent_side.on_state_change)
    next(waiting)  # nothing to read yet: it waits for a header
    parent_side.hub.add_reader(fd, waiting)
    asynpool.AsynPool.process_flush_queues(parent_side, parent_side)  # type: ignore[arg-type]  # writer still open
    assert parent_side.received == []
    assert "could not be read whole" not in caplog.text
    os.write(parent_side.outq._writer.fileno(), framed(SMALL_RESULT) * 2)
    parent_side.outq._writer.close()
    asynpool.AsynPool.process_flush_queues(parent_side, parent_side)  # type: ignore[arg-type]
    assert parent_side.received == [SMALL_RESULT, SMALL_RESULT]
