"""Batch state changes on a real redis-server: the Lua scripts follow ``next_state`` for every state x event, and
finish, cancel and stop racing each other (interleaved at the Lua level, and from many threads at once) leave one
of the allowed states with every item counted once."""

from __future__ import annotations

import itertools
import threading
import uuid
from collections.abc import Callable
from concurrent.futures import ThreadPoolExecutor

import pytest
import redis

from genesys_closer.config.redis_keys import KEYS
from genesys_closer.shared.outcomes import CloseResult, Outcome
from genesys_closer.shared.redis_connection import connect
from genesys_closer.shared.stores import ResultStores
from genesys_closer.shared.stores.batch_state import BatchEvent, BatchState, next_state

REACHABLE = {(before, after) for before, event in itertools.product(BatchState, BatchEvent)
             if (after := next_state(before, event)) not in (None, before)}


def ids(count: int) -> list[str]:
    return [str(uuid.UUID(int=i + 1, version=4)) for i in range(count)]


def item(batch_id: str, cid: str, outcome: Outcome = Outcome.CLOSED) -> CloseResult:
    return CloseResult(conversation_id=cid, outcome=outcome, batch_id=batch_id)


def started(stores: ResultStores, items: list[str], *, enqueued: bool = True) -> str:
    batch_id = uuid.uuid4().hex
    assert stores.batches.create(batch_id)
    assert stores.batches.add_members(batch_id, items) == items
    if enqueued:
        assert stores.batches.mark_enqueued(batch_id, len(items))
    return batch_id


@pytest.fixture
def stores(redis_client: redis.Redis) -> ResultStores:
    return ResultStores.open(redis_client, 3600)


def in_state(stores: ResultStores, redis_client: redis.Redis, state: BatchState, total: int | None) -> str:
    """A batch put straight into ``state`` (test set-up: every state, whatever path leads to it)."""
    batch_id = started(stores, ids(1), enqueued=False)
    redis_client.hset(KEYS.batch(batch_id), "state", state.value)
    if total is not None:
        redis_client.hset(KEYS.batch(batch_id), "total", total)
    return batch_id


@pytest.mark.parametrize(("state", "event"), list(itertools.product(BatchState, BatchEvent)))
def test_the_scripts_follow_next_state(stores: ResultStores, redis_client: redis.Redis, state: BatchState,
                                       event: BatchEvent) -> None:
    expected = next_state(state, event)
    if event is BatchEvent.ENQUEUED:
        batch_id = in_state(stores, redis_client, state, total=None)
        applied = stores.batches.mark_enqueued(batch_id, 5)  # nothing counted yet: enqueued alone
        assert stores.batches.fields(batch_id, "total") == (["5"] if applied else [None])
    elif event is BatchEvent.COMPLETED:
        batch_id = in_state(stores, redis_client, state, total=1)
        stores.outcomes.record(item(batch_id, ids(1)[0]))  # the last item: completed
        applied = stores.batches.fields(batch_id, "finished_at") != [None]
    else:
        batch_id = in_state(stores, redis_client, state, total=5)
        end = stores.batches.cancel if event is BatchEvent.CANCEL else stores.batches.stop
        change = end(batch_id, "why")
        applied = change.changed
        assert change.state is (expected or state)
        assert stores.batches.state(batch_id)[1] == ("why" if applied else "")
    assert applied is (expected is not None)
    assert stores.batches.state(batch_id)[0] is (expected or state)


def test_cancel_then_finish_and_finish_then_cancel(stores: ResultStores) -> None:
    """The two orders at the Lua level: whichever lands first decides; every item is counted either way."""
    first, last = ids(2)
    cancelled_first = started(stores, [first, last])
    stores.outcomes.record(item(cancelled_first, first))
    assert stores.batches.cancel(cancelled_first).changed
    stores.outcomes.record(item(cancelled_first, last, Outcome.CANCELLED))
    status = stores.batches.status(cancelled_first)
    assert status is not None and status.state is BatchState.CANCELLED and status.finished and status.done == 2

    finished_first = started(stores, [first, last])
    for cid in (first, last):
        stores.outcomes.record(item(finished_first, cid))
    change = stores.batches.cancel(finished_first)
    assert not change.changed and change.state is BatchState.FINISHED
    status = stores.batches.status(finished_first)
    assert status is not None and status.state is BatchState.FINISHED and status.reason == ""


@pytest.mark.parametrize("end_first", ["finish", "cancel"])
def test_stop_never_overwrites_a_finished_or_cancelled_batch(stores: ResultStores, end_first: str) -> None:
    (cid,) = ids(1)
    batch_id = started(stores, [cid])
    if end_first == "finish":
        stores.outcomes.record(item(batch_id, cid))
    else:
        stores.batches.cancel(batch_id, "operator")
    before = stores.batches.state(batch_id)
    change = stores.batches.stop(batch_id, "circuit breaker open")
    assert not change.changed and stores.batches.state(batch_id) == before


def test_a_stopped_batch_keeps_its_first_reason(stores: ResultStores) -> None:
    batch_id = started(stores, ids(1))
    assert stores.batches.stop(batch_id, "breaker: first").changed
    assert not stores.batches.stop(batch_id, "breaker: second").changed
    assert not stores.batches.cancel(batch_id).changed
    assert stores.batches.state(batch_id) == (BatchState.STOPPED, "breaker: first")


def test_finish_and_cancel_race_from_two_threads(redis_url: str) -> None:
    """200 batches, each finished by its last item while another client cancels it at the same moment."""
    recorder, canceller = ResultStores.open(connect(redis_url), 3600), ResultStores.open(connect(redis_url), 3600)
    first, last = ids(2)
    outcomes: dict[BatchState, int] = {}
    for _ in range(200):
        batch_id = started(recorder, [first, last])
        recorder.outcomes.record(item(batch_id, first))
        barrier = threading.Barrier(2)

        def finish(batch_id: str = batch_id, barrier: threading.Barrier = barrier) -> bool:
            barrier.wait()
            return recorder.outcomes.record(item(batch_id, last))

        def cancel(batch_id: str = batch_id, barrier: threading.Barrier = barrier) -> bool:
            barrier.wait()
            return canceller.batches.cancel(batch_id).changed

        with ThreadPoolExecutor(2) as pool:
            counted, cancelled = pool.submit(finish), pool.submit(cancel)
            assert counted.result()
        status = recorder.batches.status(batch_id)
        assert status is not None and status.finished and status.done == status.total == 2
        assert sum(status.counts.values()) == 2
        assert status.state is (BatchState.CANCELLED if cancelled.result() else BatchState.FINISHED)
        outcomes[status.state] = outcomes.get(status.state, 0) + 1
    assert set(outcomes) <= {BatchState.CANCELLED, BatchState.FINISHED}


def test_many_callers_finish_cancel_and_stop_one_batch(redis_url: str) -> None:
    """16 threads on their own clients: 8 record the items of a 400-item batch, 4 cancel, 4 stop, all at once, while
    a watcher reads the state. At most one cancel or stop changes it; every item is counted once; the states the
    watcher saw follow the transition table (never out of finished or cancelled)."""
    items = ids(400)
    setup = ResultStores.open(connect(redis_url), 3600)
    batch_id = started(setup, items)
    barrier = threading.Barrier(17)
    done = threading.Event()
    seen: list[BatchState] = []

    def record(part: list[str]) -> int:
        stores = ResultStores.open(connect(redis_url), 3600)
        barrier.wait()
        return sum(stores.outcomes.record(item(batch_id, cid)) for cid in part)

    def end(action: Callable[[ResultStores], Callable[..., object]]) -> int:
        stores = ResultStores.open(connect(redis_url), 3600)
        barrier.wait()
        changed = 0
        while not done.is_set():
            change = action(stores)(batch_id, "racing")
            changed += bool(getattr(change, "changed", False))
        return changed

    def watch() -> None:
        stores = ResultStores.open(connect(redis_url), 3600)
        barrier.wait()
        while not done.is_set():
            state = stores.batches.state(batch_id)[0]
            assert state is not None
            if not seen or seen[-1] is not state:
                seen.append(state)

    with ThreadPoolExecutor(17) as pool:
        recorders = [pool.submit(record, items[i::8]) for i in range(8)]
        enders = [pool.submit(end, lambda s: s.batches.cancel) for _ in range(4)]
        enders += [pool.submit(end, lambda s: s.batches.stop) for _ in range(4)]
        watcher = pool.submit(watch)
        assert sum(r.result() for r in recorders) == 400
        done.set()
        changes = [e.result() for e in enders]
        watcher.result()

    status = setup.batches.status(batch_id)
    assert status is not None and status.finished and status.done == status.total == 400
    assert sum(status.counts.values()) == 400 and len(list(setup.batches.items(batch_id))) == 400
    cancels, stops = sum(changes[:4]), sum(changes[4:])
    assert cancels + stops <= 1
    expected = BatchState.CANCELLED if cancels else BatchState.STOPPED if stops else BatchState.FINISHED
    assert status.state is expected
    seen.append(status.state)
    steps = [(a, b) for a, b in itertools.pairwise(seen) if a is not b]
    assert all(step in REACHABLE for step in steps), steps


def test_an_id_in_use_is_refused_atomically(redis_url: str) -> None:
    """Eight clients create the same batch id at once: one wins, the others change nothing."""
    batch_id = uuid.uuid4().hex
    barrier = threading.Barrier(8)

    def create(n: int) -> bool:
        stores = ResultStores.open(connect(redis_url), 3600)
        barrier.wait()
        return stores.batches.create(batch_id, label=f"creator {n}")

    with ThreadPoolExecutor(8) as pool:
        created = list(pool.map(create, range(8)))
    assert created.count(True) == 1
    status = ResultStores.open(connect(redis_url), 3600).batches.status(batch_id)
    assert status is not None and status.label == f"creator {created.index(True)}"


def test_a_staged_batch_finishes_only_once_enqueued_and_keeps_its_total(stores: ResultStores) -> None:
    """Staged (every item stored, total known) but not all published: counting every item does not finish it; the
    enqueued event does, and never replaces the staged total."""
    items = ids(2)
    batch_id = started(stores, items, enqueued=False)
    stores.batches.mark_staged(batch_id, 2)
    for cid in items:
        stores.outcomes.record(item(batch_id, cid))
    status = stores.batches.status(batch_id)
    assert status is not None and status.state is BatchState.ENQUEUING and not status.finished and status.done == 2
    assert stores.batches.mark_enqueued(batch_id, 99)
    status = stores.batches.status(batch_id)
    assert status is not None and status.state is BatchState.FINISHED and status.finished and status.total == 2
    assert not stores.batches.mark_enqueued(batch_id, 2) and stores.batches.enqueuing() == []
