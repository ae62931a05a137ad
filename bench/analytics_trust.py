"""Trust but verify, what it costs: API calls per confirmed close of an ID-list batch on the batched path with
analytics confirmations sampled live at ``ANALYTICS_VERIFY_SHARE`` 0 (no verification), the default and 1.0 on a
faithful org, and at the default under the emulator's "stuck shown ended" variants (a share of the conversations
are ``stuck``: analytics shows them ended while they are open, from the start or after our PATCH; the batch asks
for the ``participants`` policy, which closes them).

Every row also counts what must never happen: an item recorded ``closed``/``already_closed`` whose conversation is
open, or ``not_web_messaging`` though it is web messaging.

Run on its own with ``python -m bench.run --only trust`` (updates only its section of docs/benchmarks.md).
"""

from __future__ import annotations

from dataclasses import dataclass
from typing import TYPE_CHECKING, Any

from genesys_closer.config import WorkerSettings, load_producer_settings
from genesys_closer.emulator.stack import start_workers
from genesys_closer.producer.api import CloseClient

if TYPE_CHECKING:
    from bench.run import Bench, Run

SECTION = "## 6b. Trust but verify: sampled analytics confirmations"
DEFAULT_SHARE = WorkerSettings.model_fields["analytics_verify_share"].default
STUCK_SHARE = 0.1
FAITHFUL = {"analytics_stuck_ended": "off"}


@dataclass
class TrustRow:
    org: str
    share: float
    run: Run
    by_analytics: float  # share of the closes confirmed by analytics alone
    wrong: int  # records that contradict the live conversation

    @property
    def calls_per_close(self) -> float:
        return self.run.calls_per_close


def measure(bench: Bench, count: int, limit: int, concurrency: int, lag_seconds: float = 2.0) -> list[TrustRow]:
    plans: list[tuple[str, float, dict[str, Any]]] = [
        ("faithful", 0.0, FAITHFUL), ("faithful", DEFAULT_SHARE, FAITHFUL), ("faithful", 1.0, FAITHFUL),
        ("stuck shown ended (always)", DEFAULT_SHARE, {"analytics_stuck_ended": "always"}),
        ("stuck shown ended after our PATCH", DEFAULT_SHARE, {"analytics_stuck_ended": "after_patch"}),
    ]
    return [_row(bench, org, share, variant, count, limit, concurrency, lag_seconds) for org, share, variant in plans]


def _row(bench: Bench, org: str, share: float, variant: dict[str, Any], count: int, limit: int, concurrency: int,
         lag_seconds: float) -> TrustRow:
    stuck = round(count * STUCK_SHARE) if variant != FAITHFUL else 0
    ids = bench.fresh(count - stuck, rate_limit_per_minute=limit, analytics_lag_ms=lag_seconds * 1000, **variant)
    ids += bench.admin.create(stuck, "stuck") if stuck else []
    env = {"GENESYS_RATE_LIMIT_PER_MINUTE": limit, "BATCHED_CHECKS": "true", "ANALYTICS_VERIFY_SHARE": share,
           "CLOSE_ALLOWED_POLICIES": "fail,participants"}
    fleet = start_workers(2, bench.env(**env), bench.workdir / "logs", concurrency, prefix="trust-")
    client = CloseClient(load_producer_settings(redis_url=bench.redis.url))
    records: list[dict[str, Any]] = []
    try:
        def work() -> None:
            batch = client.batch(client.batches_writer.start(ids, options={"policy": "participants"}))
            batch.wait(timeout=1800)
            records.extend(r.as_dict() for r in batch.results())
        run = bench.measure(f"{org}, ANALYTICS_VERIFY_SHARE={share:g}", limit, ids, work, records=records)
    finally:
        for worker in fleet:
            worker.stop()
    truth = {c["id"]: c for c in bench.admin.conversations()}
    wrong = sum(1 for r in records if (r["outcome"] in {"closed", "already_closed"}
                                        and truth[r["conversation_id"]]["open_internally"])
                or (r["outcome"] == "not_web_messaging" and truth[r["conversation_id"]]["message_type"]
                    == "webmessaging"))
    analytics = sum(1 for r in records if r.get("confirmed_by") == "analytics")
    return TrustRow(org, share, run, analytics / max(len(records), 1), wrong)


def section(rows: list[TrustRow], count: int, limit: int, concurrency: int) -> list[str]:
    lines = [SECTION, "",
             f"{count:,} web messaging conversations per row (in the stuck rows {STUCK_SHARE:.0%} of them `stuck`), "
             f"an ID-list batch on the batched path at L = {limit:,} requests/min, analytics lagging 2 s, two "
             f"workers x {concurrency}, all rows in one run (`python -m bench.run --only trust`). Of the items a "
             "confirmation read shows ended, a sample is read live before any is recorded; a disagreement sends "
             "that item to the direct path and makes the fleet confirm live for `ANALYTICS_DISTRUST_SECONDS`.", "",
             "| org | ANALYTICS_VERIFY_SHARE | API calls per confirmed close | confirmed by analytics alone | "
             "records against the live state | closed | time |", "|---|---|---|---|---|---|---|"]
    for row in rows:
        lines.append(f"| {row.org} | {row.share:g} | {row.calls_per_close:.3f} | {row.by_analytics:.0%} | "
                     f"{row.wrong} | {row.run.closed:,}/{row.run.total:,} | {row.run.duration:.0f} s |")
    lines += ["", "*records against the live state*: items recorded `closed`/`already_closed` whose conversation "
              "is open, or `not_web_messaging` though it is web messaging (must be 0). The default share costs "
              "about one read per confirmation read that shows anything ended (at least one per read), on top of "
              "share 0; 1.0 reads every one (at most 10 by the pump per read, the rest by their own task). In the "
              "stuck rows the stuck conversations are read, escalated and confirmed live (several calls each) and, "
              "after the first disagreement, every confirmation is a read.", ""]
    return lines


def problems(rows: list[TrustRow]) -> list[str]:
    found = [f"{row.run.name}: {row.wrong} record(s) against the live state" for row in rows if row.wrong]
    found += [f"{row.run.name}: closed {row.run.closed}/{row.run.total}" for row in rows
              if row.run.closed != row.run.total]
    default = [row for row in rows if row.org == "faithful" and row.share == DEFAULT_SHARE]
    found += [f"{row.run.name}: {row.calls_per_close:.3f} calls per close > 1.1" for row in default
              if row.calls_per_close > 1.1]
    return found
