"""Each org's recovery re-sends only its own lost work, and every message it sends names its org: against a real
Redis, with a recording double for Celery's publishing. The two orgs hold the same conversation ids under the
same (caller-chosen) batch id, the case where only the org tells them apart."""

from __future__ import annotations

import contextlib
import time
import uuid
from collections.abc import Iterator
from dataclasses import dataclass, field
from typing import Any

import redis

from genesys_closer.config.redis_keys import keys_for
from genesys_closer.shared.batches import BatchWriter
from genesys_closer.shared.names import TASK_NAME
from genesys_closer.shared.stores import ResultStores
from genesys_closer.worker.recovery.broker_scan import HeldClose
from genesys_closer.worker.recovery.redrive import Recovery

ORGS = ("default", "eu-prod")
BATCH = "ab" * 16


@dataclass
class RecordingApp:
    """Every task BatchWriter publishes: (name, first argument, keyword arguments)."""

    sent: list[tuple[str, str | None, dict[str, Any]]] = field(default_factory=list)

    @contextlib.contextmanager
    def producer_or_acquire(self) -> Iterator[None]:
        yield None

    def send_task(self, name: str, args: list[Any] | None = None, kwargs: dict[str, Any] | None = None,
                  **_: Any) -> Any:
        self.sent.append((name, args[0] if args else None, dict(kwargs or {})))
        return type("Sent", (), {"id": f"task-{len(self.sent)}"})()


def test_each_orgs_recovery_resends_only_its_own_work_naming_the_org(redis_client: redis.Redis) -> None:
    app = RecordingApp()
    ids = [str(uuid.uuid4()) for _ in range(5)]
    standalone = str(uuid.uuid4())
    for org in ORGS:  # the same ids, the same batch id and a standalone close of the same conversation in both
        results = ResultStores.open(redis_client, 3600, keys=keys_for(org))
        BatchWriter(app, results, time.time).start(ids, options={}, batch_id=BATCH)  # type: ignore[arg-type]
        results.pending.track(f"lost-{org}", standalone, {}, "interactive")
    assert [kwargs.get("org") for name, _, kwargs in app.sent if name == TASK_NAME] == [None] * 5 + ["eu-prod"] * 5
    app.sent.clear()

    later = time.time() + 1000  # past the stall window: every item in flight and both standalone closes are lost
    held = {HeldClose("still-queued", ids[0], BATCH, "default")}  # default's first item is still in the broker
    reports = {}
    for org in ORGS:
        results = ResultStores.open(redis_client, 3600, keys=keys_for(org), clock=lambda: later)
        writer = BatchWriter(app, results, lambda: later)  # type: ignore[arg-type]
        reports[org] = Recovery(redis_client, results, writer, stall_seconds=300, held=lambda _: held).run()
    resent = [(cid, kwargs.get("org"), kwargs.get("batch_id")) for name, cid, kwargs in app.sent if name == TASK_NAME]
    default_items = {cid for cid, org, batch in resent if org is None and batch == BATCH}
    eu_items = {cid for cid, org, batch in resent if org == "eu-prod" and batch == BATCH}
    assert default_items == set(ids[1:])  # the one the broker holds is not sent twice
    assert eu_items == set(ids)  # default's queued message is not eu-prod's item
    assert sorted((cid, str(org)) for cid, org, batch in resent if batch is None) == [(standalone, "None"),
                                                                                       (standalone, "eu-prod")]
    assert reports["default"].batches == {BATCH: 4} and reports["eu-prod"].batches == {BATCH: 5}
    for org in ORGS:  # each re-sent standalone close is tracked again in its own org only
        tracked = dict(ResultStores.open(redis_client, 3600, keys=keys_for(org)).pending.entries())
        assert len(tracked) == 1 and f"lost-{org}" not in tracked
