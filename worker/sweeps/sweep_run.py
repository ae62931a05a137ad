"""Sweeps as the worker runs them: at most one at a time in the fleet, candidates recorded, a batch started."""

from __future__ import annotations

import json
import logging
import time
from collections.abc import Callable
from datetime import UTC, datetime
from typing import Any

import redis

from genesys_closer.shared.batches import ORIGIN_SWEEP, BatchWriter
from genesys_closer.shared.lanes import BULK, lane
from genesys_closer.shared.locks import OwnedLock
from genesys_closer.shared.options import CloseOptions
from genesys_closer.shared.stores import ResultStores
from genesys_closer.shared.sweep_filters import SweepFilters
from genesys_closer.worker.closing.sweep_query import PAGING_CAP, Retrying, run_sweep
from genesys_closer.worker.genesys.client import GenesysClient

log = logging.getLogger("genesys_closer.worker")


class SweepRunner:
    def __init__(self, client: redis.Redis, genesys: GenesysClient, retrying: Retrying, results: ResultStores,
                 batches: BatchWriter, lock_seconds: float, *, clock: Callable[[], float] = time.time,
                 paging_cap: int = PAGING_CAP) -> None:
        self.paging_cap = paging_cap
        self.redis = client
        self.genesys = genesys
        self.retrying = retrying
        self.results = results
        self.keys = results.batches.keys
        self.batches = batches
        self.lock_seconds = lock_seconds
        self.clock = clock

    def run(self, sweep_id: str, filters: dict[str, Any], *, dry_run: bool, options: dict[str, Any],
            scheduled: bool) -> dict[str, Any]:
        """Run one sweep; record its candidates; start its batch (unless ``dry_run``). Returns the summary."""
        summary: dict[str, Any] = {"sweep_id": sweep_id, "dry_run": dry_run, "scheduled": scheduled}
        try:
            parsed = SweepFilters.from_dict(filters)
            CloseOptions().with_overrides(options)
        except ValueError as exc:
            return {**summary, "error": f"invalid sweep: {str(exc)[:1000]}"}
        lock = OwnedLock(self.redis, self.keys.sweep_lock, self.lock_seconds)
        if not lock.acquire(sweep_id):
            return {**summary, "skipped": "another sweep is running"}
        with lock:
            now = datetime.fromtimestamp(self.clock(), tz=UTC)
            with lane(BULK):  # background work: single closes go first
                report = run_sweep(self.genesys, parsed, now=now, retrying=self.retrying, paging_cap=self.paging_cap)
            summary.update({"filters": parsed.as_dict(), "candidates": len(report.candidates),
                            "chosen": len(report.chosen), "pages": report.pages, "intervals": report.intervals,
                            "splits": report.splits, "unreachable": report.unreachable,
                            "duplicates_dropped": report.duplicates_dropped, "api_calls": report.api_calls,
                            "batch_id": None})
            if report.chosen and not dry_run:
                summary["batch_id"] = self.batches.start(
                    report.chosen, options=options, label="scheduled sweep" if scheduled else "sweep",
                    source=json.dumps(parsed.as_dict(), separators=(",", ":")), origin=ORIGIN_SWEEP)
            self.results.sweeps.save(sweep_id, summary, [c.as_json() for c in report.candidates])
            log.info("sweep finished: %d candidates, %d chosen", summary["candidates"], summary["chosen"],
                     extra={"batch_id": summary["batch_id"]})
            return summary
