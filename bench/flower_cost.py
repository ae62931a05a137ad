"""What Flower that tells the truth costs the broker: one ID-list batch on the batched path (analytics lagging 2 s,
so items wait for the batched pre-check and confirmation reads), with ``BATCHED_OUTCOME_EVENTS`` off and on, side
by side in one run, each row on a fresh Redis database state and emulator.

Per close, from Redis' own counters (``INFO commandstats`` / ``INFO stats``, deltas over the batch): broker queue
messages (``LPUSH``), pub/sub messages (``PUBLISH``: Celery's task and worker events), and every byte sent to Redis.
A listener (as Flower is) counts the task events by kind, and checks what Flower would show: for each conversation,
the last close task's last event (``task-succeeded`` with the outcome, or ``task-waiting``). Genesys API calls per
close must be the same in both rows: the events cost no call.

Off is the cost of main before this change in messages: a waiting task's ``task-waiting`` takes the place of the
``task-succeeded`` it sent then, one for one (the listener's counts show it). On adds the pump's ``task-succeeded``
per close a batched read confirmed.

Run on its own with ``python -m bench.run --only flower`` (updates only its section of docs/benchmarks.md).
"""

from __future__ import annotations

import ast
import threading
import time
from collections import Counter
from dataclasses import dataclass, field
from typing import TYPE_CHECKING, Any

import redis
from celery import Celery
from celery.events.state import TASK_EVENT_TO_STATE
from celery.states import precedence

from genesys_closer.config import load_producer_settings
from genesys_closer.emulator.stack import start_workers
from genesys_closer.producer.api import CloseClient
from genesys_closer.shared.names import TASK_NAME

if TYPE_CHECKING:
    from bench.run import Bench, Run

SECTION = "## 10. Flower that tells the truth: what it costs the broker"


def _state(kind: str) -> str:
    """The state Celery's event ``State`` (Flower's) gives an event of ``kind``: its own for Celery's events, the
    upper-cased name for a custom one (``task-waiting``: ``WAITING``)."""
    subject = kind.split("-", 1)[1]
    return str(TASK_EVENT_TO_STATE.get(subject) or subject.upper())


@dataclass
class EventTally:
    """Task events as a listener receives them, in any order (a worker sends its task-received and task-started
    events grouped, a pool process its task-waiting at once, so a task's events can arrive out of order): by kind,
    and what Flower shows each conversation's last close task as."""

    kinds: dict[str, list[str]] = field(default_factory=dict)  # task id -> the kinds of its events, as received
    conversation_of: dict[str, str] = field(default_factory=dict)  # close task id -> conversation id
    received_at: dict[str, float] = field(default_factory=dict)
    lock: threading.Lock = field(default_factory=threading.Lock)

    def __call__(self, event: dict[str, Any]) -> None:
        kind, uuid = str(event.get("type")), str(event.get("uuid", ""))
        if not kind.startswith("task-"):
            return
        with self.lock:
            if kind == "task-received" and event.get("name") == TASK_NAME:
                self.conversation_of[uuid] = str(ast.literal_eval(event.get("args") or "['?']")[0])
                self.received_at[uuid] = float(event.get("timestamp") or 0.0)
            self.kinds.setdefault(uuid, []).append(kind)

    @property
    def by_type(self) -> Counter[str]:
        """Events of close tasks by kind; any other task's as ``other <kind>``."""
        with self.lock:
            counts: Counter[str] = Counter()
            for uuid, kinds in self.kinds.items():
                close = uuid in self.conversation_of
                counts.update(kind if close else f"other {kind}" for kind in kinds)
            return counts

    def shown_last(self) -> Counter[str]:
        """For each conversation, the event its last close task shows in Flower: Celery's ``State`` never lets an
        event of an earlier state (received, started) replace a later one (a custom state, success), whatever
        order they arrive in, so it is the task's event of the latest state."""
        with self.lock:
            last_task: dict[str, str] = {}
            for uuid, cid in self.conversation_of.items():
                if cid not in last_task or self.received_at[uuid] > self.received_at[last_task[cid]]:
                    last_task[cid] = uuid
            shown: Counter[str] = Counter()
            for uuid in last_task.values():
                kinds = [kind for kind in self.kinds.get(uuid, []) if kind not in {"task-sent", "task-received"}]
                shown[min(kinds, key=lambda kind: precedence(_state(kind))) if kinds else "none"] += 1
            return shown


@dataclass
class FlowerRow:
    events: bool
    run: Run
    lpush: float  # per close
    publish: float
    bytes_in: float
    tally: EventTally

    def per_close(self, kind: str) -> float:
        return self.tally.by_type[kind] / max(self.run.closed, 1)


def _counters(client: redis.Redis) -> tuple[int, int, int]:
    stats = client.info("commandstats")
    calls = {name: int(value.get("calls", 0)) for name, value in stats.items()}
    return (calls.get("cmdstat_lpush", 0), calls.get("cmdstat_publish", 0),
            int(client.info("stats")["total_net_input_bytes"]))


def _listen(redis_url: str, tally: EventTally) -> tuple[threading.Thread, Any]:
    """A Celery event receiver in a thread, as Flower runs one; returns once it is subscribed."""
    app = Celery("bench-listener", broker=redis_url, set_as_current=False)
    connection = app.connection()
    receiver = app.events.Receiver(connection, handlers={"*": tally})
    client = redis.Redis.from_url(redis_url)
    patterns = int(client.pubsub_numpat())  # the receiver subscribes to the events' pattern
    thread = threading.Thread(target=lambda: receiver.capture(limit=None, timeout=None, wakeup=False), daemon=True)
    thread.start()
    deadline = time.monotonic() + 30
    while int(client.pubsub_numpat()) <= patterns and time.monotonic() < deadline:
        time.sleep(0.05)
    return thread, receiver


def measure(bench: Bench, count: int, limit: int, concurrency: int, lag_seconds: float = 2.0) -> list[FlowerRow]:
    return [_row(bench, events, count, limit, concurrency, lag_seconds) for events in (False, True)]


def _row(bench: Bench, events: bool, count: int, limit: int, concurrency: int, lag_seconds: float) -> FlowerRow:
    ids = bench.fresh(count, rate_limit_per_minute=limit, analytics_lag_ms=lag_seconds * 1000)
    env = {"GENESYS_RATE_LIMIT_PER_MINUTE": limit, "BATCHED_CHECKS": "true",
           "BATCHED_OUTCOME_EVENTS": "true" if events else "false"}
    fleet = start_workers(2, bench.env(**env), bench.workdir / "logs", concurrency, prefix="flower-")
    client = CloseClient(load_producer_settings(redis_url=bench.redis.url))
    tally = EventTally()
    _, receiver = _listen(bench.redis.url, tally)
    records: list[dict[str, Any]] = []
    counted: dict[str, tuple[int, int, int]] = {}
    redis_client = redis.Redis.from_url(bench.redis.url)
    try:
        def work() -> None:
            counted["before"] = _counters(redis_client)
            batch = client.batch(client.batches_writer.start(ids, options={}))
            batch.wait(timeout=1800)
            records.extend(r.as_dict() for r in batch.results())
            settled_until = time.monotonic() + 60  # the last events may still be on their way to the listener
            while tally.shown_last()["task-waiting"] and events and time.monotonic() < settled_until:
                time.sleep(0.2)
            counted["after"] = _counters(redis_client)
        run = bench.measure(f"BATCHED_OUTCOME_EVENTS={'true' if events else 'false'}", limit, ids, work,
                            records=records)
    finally:
        receiver.should_stop = True
        for worker in fleet:
            worker.stop()
    lpush, publish, bytes_in = (after - before for after, before in zip(counted["after"], counted["before"],
                                                                         strict=True))
    closes = max(run.closed, 1)
    return FlowerRow(events, run, lpush / closes, publish / closes, bytes_in / closes, tally)


def section(rows: list[FlowerRow], count: int, limit: int, concurrency: int) -> list[str]:
    lines = [SECTION, "",
             f"{count:,} web messaging conversations per row, an ID-list batch on the batched path at L = {limit:,} "
             f"requests/min, analytics lagging 2 s, two workers x {concurrency}, a Celery event listener subscribed "
             "as Flower is; both rows in one run (`python -m bench.run --only flower`). Per close, from Redis' own "
             "counters over the batch:", "",
             "| BATCHED_OUTCOME_EVENTS | API calls per close | broker queue messages (LPUSH) | pub/sub messages "
             "(PUBLISH) | bytes sent to Redis | close-task events: waiting / succeeded | conversations whose last "
             "task shows its outcome | closed | time |", "|---|---|---|---|---|---|---|---|---|"]
    for row in rows:
        shown = row.tally.shown_last()
        total = sum(shown.values())
        lines.append(f"| {'true' if row.events else 'false'} | {row.run.calls_per_close:.3f} | {row.lpush:.2f} | "
                     f"{row.publish:.2f} | {row.bytes_in:,.0f} | {row.per_close('task-waiting'):.2f} / "
                     f"{row.per_close('task-succeeded'):.2f} | {shown['task-succeeded']:,}/{total:,} | "
                     f"{row.run.closed:,}/{row.run.total:,} | {row.run.duration:.0f} s |")
    off, on = rows[0], rows[-1]
    lines += ["", f"The pump's events cost {on.publish - off.publish:+.2f} pub/sub messages and "
              f"{on.bytes_in - off.bytes_in:+,.0f} bytes to Redis per close (bytes include every other write, so "
              "they carry the run-to-run noise of timing-dependent polls), "
              f"{on.lpush - off.lpush:+.2f} queue messages and {on.run.calls_per_close - off.run.calls_per_close:+.3f} "
              "API calls per close (the reads' shares vary a little with timing). Off costs what main did before this "
              "change, message for message: a waiting task's `task-waiting` event takes the place of the "
              "`task-succeeded` it sent then (the listener counts one of the two per close task). With events off "
              "the conversations confirmed by a batched read show their last task `WAITING`; with them on every "
              "conversation's last task shows `SUCCESS` and its outcome record (the pump's event carries the "
              "record, about a kilobyte of the bytes above).", ""]
    return lines


def problems(rows: list[FlowerRow], *, smoke: bool = False) -> list[str]:
    """What must hold: every item closed, and with the events on every conversation's last task shows its outcome;
    in a full run also no queue message and no API call more per close (a smoke run's 60 closes make one extra pump
    task or read look like a difference)."""
    off, on = rows[0], rows[-1]
    found = [f"{row.run.name}: closed {row.run.closed}/{row.run.total}" for row in rows
             if row.run.closed != row.run.total]
    shown = on.tally.shown_last()
    if shown["task-succeeded"] != sum(shown.values()):
        found.append(f"{on.run.name}: {sum(shown.values()) - shown['task-succeeded']} conversation(s) whose last "
                     f"task does not show its outcome ({dict(shown)})")
    if smoke:
        return found
    if abs(on.lpush - off.lpush) > 0.05:
        found.append(f"outcome events cost queue messages: {off.lpush:.2f} -> {on.lpush:.2f} LPUSH per close")
    if abs(on.run.calls_per_close - off.run.calls_per_close) > 0.05:
        found.append(f"outcome events changed API calls per close: {off.run.calls_per_close:.3f} -> "
                     f"{on.run.calls_per_close:.3f}")
    return found
