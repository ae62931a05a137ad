"""Throughput per token: API calls per confirmed close and closes per minute at one limit, the direct path (every
item reads its conversation before and after the PATCH) against the batched path (pre-check and confirmation by
analytics reads of up to 100 conversations each), for ID lists and sweep candidates, with analytics lagging
0.3 s, 2 s and 30 s.

Closes per minute at Genesys' default 300 requests/min are derived from what was measured: the share of the limit
the fleet used while it had requests to send, times 300, divided by the calls per close.
"""

from __future__ import annotations

from dataclasses import dataclass
from typing import TYPE_CHECKING, Any

from genesys_closer.shared.batches import ORIGIN_LIST, ORIGIN_SWEEP

if TYPE_CHECKING:
    from bench.run import Bench, Run

GENESYS_DEFAULT_PER_MINUTE = 300
PATCH_ROUTE = "/api/v2/conversations/messages/{conversationId}"


@dataclass
class TokenRow:
    source: str
    path: str
    lag_seconds: float
    run: Run
    busy_share: float  # of the limit, from the first request to the last PATCH (the fleet had requests to send)
    by_analytics: float  # share of the closes confirmed by a batched analytics read

    @property
    def closes_per_minute(self) -> float:
        return self.run.closed / self.run.duration * 60 if self.run.duration else 0.0

    @property
    def at_genesys_default(self) -> float:
        return GENESYS_DEFAULT_PER_MINUTE * self.busy_share / self.run.calls_per_close if self.run.closed else 0.0


def busy_share(run: Run) -> float:
    """Requests per minute / limit over the window in which the fleet still had PATCHes to send."""
    times = [t for t, _ in run.timeline]  # every request; the window ends at the last PATCH
    last_patch = run.extra.get("last_patch_t") or (max(times) if times else 0.0)
    first = min(times) if times else 0.0
    inside = sum(1 for t in times if t <= last_patch)
    window = last_patch - first
    return inside / window * 60 / run.limit if window > 0 else 0.0


def measure(bench: Bench, count: int, limit: int, lags: tuple[float, ...], concurrency: int,
            at_default: int) -> list[TokenRow]:
    """Every source x path x lag at ``limit``, then ``at_default`` items of an ID list on the batched path at
    Genesys' own 300/min (analytics lagging 2 s): the check that the derived figure holds at that rate."""
    rows = []
    for source, origin in (("ID list", ORIGIN_LIST), ("sweep candidates", ORIGIN_SWEEP)):
        plans: list[tuple[str, float, dict[str, Any]]] = [("direct", lags[min(1, len(lags) - 1)],
                                                           {"BATCHED_CHECKS": "false"})]
        plans += [("batched", lag, {"BATCHED_CHECKS": "true"}) for lag in lags]
        for path, lag, env in plans:
            rows.append(_row(bench, source, origin, path, lag, count, limit, concurrency, env))
    rows.append(_row(bench, "ID list", ORIGIN_LIST, "batched", 2.0, at_default, GENESYS_DEFAULT_PER_MINUTE,
                     concurrency, {"BATCHED_CHECKS": "true"}))
    return rows


def _row(bench: Bench, source: str, origin: str, path: str, lag: float, count: int, limit: int, concurrency: int,
         env: dict[str, Any]) -> TokenRow:
    ids = bench.fresh(count, rate_limit_per_minute=limit, analytics_lag_ms=lag * 1000)
    run = bench.ours(f"{source}, {path} path, analytics lag {lag:g} s, limit {limit}/min", ids, limit, 2, concurrency,
                     origin=origin, **env)
    requests = bench.admin.requests()
    run.extra["last_patch_t"] = max((r["t"] for r in requests if r["method"] == "PATCH"
                                     and r["route"] == PATCH_ROUTE), default=0.0)
    records = run.extra.get("records", [])
    analytics = sum(1 for r in records if r.get("confirmed_by") == "analytics")
    return TokenRow(source, path, lag, run, busy_share(run), analytics / max(len(records), 1))


def table(rows: list[TokenRow]) -> list[str]:
    lines = ["| source | path | analytics lag | limit L | API calls per confirmed close | confirmed by analytics | "
             "429s | limit used (while sending) | closes/min at L (whole run) | closes/min at Genesys' 300/min "
             "(derived) |", "|---|---|---|---|---|---|---|---|---|---|"]
    for row in rows:
        lines.append(f"| {row.source} | {row.path} | {row.lag_seconds:g} s | {row.run.limit:,}/min | "
                     f"{row.run.calls_per_close:.3f} | "
                     f"{row.by_analytics:.0%} | {row.run.share_429:.2%} | {row.busy_share:.3f} | "
                     f"{row.closes_per_minute:,.0f} | {row.at_genesys_default:.0f} |")
    return lines
