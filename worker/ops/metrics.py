"""Prometheus metrics of the workers (``prometheus-client``).

With ``METRICS_PORT`` set, the worker's main process serves ``/metrics`` and every pool process writes its
samples to ``PROMETHEUS_MULTIPROC_DIR`` (set up by ``worker.app`` before anything imports prometheus_client),
so the numbers cover the whole worker, not one child. Every figure of one Genesys org carries its ``org`` label.
"""

from __future__ import annotations

import os
from dataclasses import dataclass

from prometheus_client import CollectorRegistry, Counter, Gauge, Histogram, multiprocess, start_http_server

CLOSES = Counter("genesys_closer_closes_total", "Closes finished, by outcome.", ["outcome", "org"])
API_REQUESTS = Counter("genesys_closer_api_requests_total", "HTTP requests to Genesys Cloud, by route and status.",
                       ["route", "status", "org"])
TRANSPORT_ERRORS = Counter("genesys_closer_transport_errors_total",
                           "Requests without an HTTP response (timeouts, dropped connections).",
                           ["route", "org"])
RATE_LIMITED = Counter("genesys_closer_rate_limited_total", "HTTP 429 responses from Genesys Cloud.", ["org"])
FLEET_PAUSES = Counter("genesys_closer_fleet_pauses_total", "Fleet-wide pauses started after a 429.", ["org"])
HANDED_BACK = Counter("genesys_closer_handed_back_total",
                      "Bulk closes handed back to the broker until their turn at the rate limit (no slot near).",
                      ["org"])
LIMITER_WAIT = Histogram("genesys_closer_limiter_wait_seconds", "Time spent waiting for a rate-limit slot.",
                         buckets=(0.01, 0.05, 0.1, 0.25, 0.5, 1, 2, 5))
CONFIRM_LATENCY = Histogram("genesys_closer_confirm_seconds", "From the disconnect PATCH to a confirming read.",
                            buckets=(0.1, 0.25, 0.5, 1, 2, 5, 10, 30))
TOKEN_REFRESHES = Counter("genesys_closer_token_refreshes_total", "OAuth tokens fetched for the fleet.", ["org"])
REDIS_MEMORY_USED = Gauge("genesys_closer_redis_memory_used_ratio",
                          "Redis used_memory / maxmemory at the last recovery check (0 when maxmemory is unset).",
                          multiprocess_mode="mostrecent")

ANALYTICS_TRUSTED = Gauge("genesys_closer_analytics_trusted",
                          "1 while the fleet trusts analytics confirmations (sampled), 0 while it confirms every "
                          "item live after a disagreement.", ["org"], multiprocess_mode="mostrecent")
ANALYTICS_VERIFICATIONS = Counter("genesys_closer_analytics_verifications_total",
                                  "Analytics confirmations checked against a live read, by result.",
                                  ["result", "org"])
ANALYTICS_DISTRUSTS = Counter("genesys_closer_analytics_distrusts_total",
                              "Disagreements between analytics and the live conversation (each starts a cooling-off).",
                              ["org"])


@dataclass(frozen=True)
class OrgMetrics:
    """The transport's hooks for one org: each figure with that org's label."""

    org: str

    def on_reply(self, label: str, status: int) -> None:
        API_REQUESTS.labels(label, str(status), self.org).inc()
        if status == 429:
            RATE_LIMITED.labels(self.org).inc()

    def on_transport_error(self, label: str) -> None:
        TRANSPORT_ERRORS.labels(label, self.org).inc()

    def on_limiter_wait(self, seconds: float) -> None:
        LIMITER_WAIT.observe(seconds)

    def on_pause(self, seconds: float, started: bool) -> None:
        if started:
            FLEET_PAUSES.labels(self.org).inc()

    def on_token_refresh(self) -> None:
        TOKEN_REFRESHES.labels(self.org).inc()


def serve(port: int, address: str = "0.0.0.0") -> None:  # noqa: S104 - a container's metrics port
    """Serve /metrics for the whole worker (all pool processes) from the main process."""
    registry = CollectorRegistry()
    if os.environ.get("PROMETHEUS_MULTIPROC_DIR"):
        multiprocess.MultiProcessCollector(registry)  # type: ignore[no-untyped-call]
        start_http_server(port, addr=address, registry=registry)
    else:
        start_http_server(port, addr=address)


def process_exited(pid: int) -> None:
    if os.environ.get("PROMETHEUS_MULTIPROC_DIR"):
        multiprocess.mark_process_dead(pid)  # type: ignore[no-untyped-call]
