"""Several orgs sharing one fleet (issue 20): two workers x 8, three orgs at Genesys' 300 requests/min each, all in
one emulator process (one region, orgs told apart by their credentials) and one orgs file. Side by side in one run:

1. org B's single closes (``close(wait=True)``, one after another) on an idle fleet;
2. the same while org A runs a 10,000-item bulk batch at its full rate;
3. every org's share of its own limit while all three run bulks together (B and C start theirs beside A's),
   counted from the emulator's request log by org over a fixed window, and the CPU the workers and Redis spent per
   close meanwhile, from which follows how many orgs at full rate one 2-core host serves.

What must never happen is counted too: a request carrying one org's token against another org's conversation (the
log names each request's org; another org's id would also be answered 404). ``python -m bench.run --only orgs``
runs this section alone and replaces only it in docs/benchmarks.md; ``--smoke`` runs a tiny version.
"""

from __future__ import annotations

import itertools
import os
import re
import statistics
import tempfile
import time
from collections import Counter
from dataclasses import dataclass, field
from pathlib import Path

import psutil

from bench.interactive_lane import single_closes
from genesys_closer.config import load_producer_settings
from genesys_closer.emulator.stack import CeleryWorker, EmulatorProcess, RedisServer, closer_env, start_workers
from genesys_closer.producer.api import CloseClient

SECTION = "## 9. Several orgs on one fleet"
LIMIT = 300  # requests per minute per token, each org
ORGS = ("org-a", "org-b", "org-c")
HOST_CORES = 2
SHARE_GOAL = 0.95
LATENCY_GOAL = 1.5
RETRY = re.compile(r"close_conversation\[[^\]]+\] retry: Retry in")


@dataclass(frozen=True)
class OrgsSizes:
    a_bulk: int = 10_000
    other_bulk: int = 1_000  # B's and C's: more than the window takes, so they run throughout it
    singles: int = 8
    window_seconds: float = 60.0
    concurrency: int = 8

    @classmethod
    def smoke(cls) -> OrgsSizes:
        return cls(a_bulk=300, other_bulk=150, singles=2, window_seconds=8.0)


@dataclass
class OrgsFigures:
    sizes: OrgsSizes
    idle_latencies: list[float]
    busy_latencies: list[float]
    a_requests_during_singles: float  # org A's share of its limit while B's single closes ran
    shares: dict[str, float]  # each org's share of its own limit in the window
    closes: dict[str, int]  # closes each org finished in the window
    window_seconds: float
    worker_cpu_seconds: float
    redis_cpu_seconds: float
    foreign_requests: int  # requests whose token's org does not hold the conversation they name
    not_found: int
    calls_per_close: dict[str, float] = field(default_factory=dict)
    longest_gap: dict[str, float] = field(default_factory=dict)  # seconds without a request of the org, in the window
    retries_per_close: float = 0.0  # Celery retries (here: hand-backs at the limiter) per close, the whole run
    load_average: float = 0.0  # the host's 1-minute load average at the end of the window (other work included)

    @property
    def idle_median(self) -> float:
        return statistics.median(self.idle_latencies)

    @property
    def busy_median(self) -> float:
        return statistics.median(self.busy_latencies)

    @property
    def latency_ratio(self) -> float:
        return self.busy_median / self.idle_median if self.idle_median else 0.0

    @property
    def total_closes(self) -> int:
        return sum(self.closes.values())

    @property
    def cpu_ms_per_close(self) -> float:
        return (self.worker_cpu_seconds + self.redis_cpu_seconds) / max(self.total_closes, 1) * 1000

    @property
    def closes_per_second_per_org(self) -> float:
        """An org at its full rate: closes per second (measured in the window, averaged over the three)."""
        return self.total_closes / self.window_seconds / len(ORGS) if self.window_seconds else 0.0

    @property
    def orgs_per_host(self) -> float:
        """Orgs at full rate whose workers and Redis one host of ``HOST_CORES`` cores can run, all cores busy."""
        per_org = self.cpu_ms_per_close / 1000 * self.closes_per_second_per_org
        return HOST_CORES / per_org if per_org else 0.0


def org_client(org: str) -> tuple[str, str]:
    return f"{org}-client", f"{org}-secret"


def write_orgs_file(path: Path, base_url: str) -> dict[str, str]:
    """The fleet's orgs file (each org's emulator client, its limit); returns the variables holding the secrets."""
    lines, env = [], {}
    for org in ORGS:
        client_id, secret = org_client(org)
        variable = f"{org.upper().replace('-', '_')}_CLIENT_SECRET"
        env[variable] = secret
        lines += [f"[orgs.{org}]", f'api_url = "{base_url}"', f'login_url = "{base_url}"',
                  f'client_id = "{client_id}"', f'client_secret_env = "{variable}"',
                  f"rate_limit_per_minute = {LIMIT}", ""]
    path.write_text("\n".join(lines))
    return env


def cpu_seconds(process: psutil.Process) -> float:
    """User and system CPU of a process and its children (a worker's pool), 0 for what has gone."""
    total = 0.0
    for each in [process, *process.children(recursive=True)]:
        try:
            times = each.cpu_times()
        except psutil.NoSuchProcess:
            continue
        total += times.user + times.system
    return total


def _wait(condition: object, timeout: float) -> None:
    deadline = time.monotonic() + timeout
    while not condition() and time.monotonic() < deadline:  # type: ignore[operator]
        time.sleep(0.2)


def measure(sizes: OrgsSizes) -> OrgsFigures:
    workdir = Path(tempfile.mkdtemp(prefix="genesys-closer-orgs-bench-"))
    redis_server = RedisServer(workdir / "redis").start()
    emulator = EmulatorProcess(["--rate-limit-per-minute", str(LIMIT), "--seed", "20",
                                *(f"--org={org}:{':'.join(org_client(org))}" for org in ORGS)],
                               workdir / "logs").start()
    secrets = write_orgs_file(workdir / "orgs.toml", emulator.base_url)
    env = closer_env(redis_server.url, emulator.base_url, GENESYS_RATE_LIMIT_PER_MINUTE=LIMIT,
                     ORGS_FILE=workdir / "orgs.toml", **secrets)
    workers: list[CeleryWorker] = start_workers(2, env, workdir / "logs", concurrency=sizes.concurrency,
                                                prefix="orgs-")
    try:
        settings = load_producer_settings(redis_url=redis_server.url)
        clients = {org: CloseClient(settings, org=org) for org in ORGS}
        admin = emulator.admin
        owner: dict[str, str] = {}

        def create(org: str, count: int) -> list[str]:
            ids = admin.create(count, org=org)
            owner.update(dict.fromkeys(ids, org))
            return ids

        idle = single_closes(clients["org-b"], create("org-b", sizes.singles))
        a_batch = clients["org-a"].close_many(create("org-a", sizes.a_bulk), label="org-a bulk")
        _wait(lambda: a_batch.status().done >= 20, 120)  # A is at its full rate
        singles_from = time.time()
        busy = single_closes(clients["org-b"], create("org-b", sizes.singles))
        singles_until = time.time()

        others = {org: clients[org].close_many(create(org, sizes.other_bulk), label=f"{org} bulk")
                  for org in ("org-b", "org-c")}
        batches = {"org-a": a_batch, **others}
        _wait(lambda: all(b.status().done >= 20 for b in others.values()), 120)  # B and C at their full rates
        done_before = {org: batch.status().done for org, batch in batches.items()}
        processes = [psutil.Process(w.process.pid) for w in workers if w.process is not None]
        redis_process = psutil.Process(redis_server.process.pid) if redis_server.process else None
        cpu_before = sum(cpu_seconds(p) for p in processes)
        redis_before = cpu_seconds(redis_process) if redis_process else 0.0
        window_from = time.time()
        time.sleep(sizes.window_seconds)  # the measurement window itself
        window_until = time.time()
        load_average = os.getloadavg()[0]
        cpu_after = sum(cpu_seconds(p) for p in processes)
        redis_after = cpu_seconds(redis_process) if redis_process else 0.0
        done_after = {org: batch.status().done for org, batch in batches.items()}
        for batch in batches.values():
            batch.cancel()
        retries = sum(len(RETRY.findall(w.log_path.read_text(errors="replace"))) for w in workers)

        log = [r for r in admin.requests() if r["route"] != "/oauth/token"]
        in_window = Counter(r["org"] for r in log if window_from <= r["t"] < window_until)
        during_singles = sum(1 for r in log if r["org"] == "org-a" and singles_from <= r["t"] < singles_until)
        window = window_until - window_from
        per_window = LIMIT / 60 * window
        foreign = sum(1 for r in log if r["conversation_id"] and any(
            owner.get(cid) not in (None, r["org"]) for cid in r["conversation_id"].split(",")))
        closes = {org: done_after[org] - done_before[org] for org in ORGS}
        gaps = {org: max((b - a for a, b in itertools.pairwise(
            [window_from, *sorted(r["t"] for r in log if r["org"] == org and window_from <= r["t"] < window_until),
             window_until])), default=window) for org in ORGS}
        return OrgsFigures(
            sizes=sizes, idle_latencies=idle, busy_latencies=busy,
            a_requests_during_singles=during_singles / (LIMIT / 60 * max(singles_until - singles_from, 1e-9)),
            shares={org: in_window[org] / per_window for org in ORGS}, closes=closes, window_seconds=window,
            worker_cpu_seconds=cpu_after - cpu_before, redis_cpu_seconds=redis_after - redis_before,
            foreign_requests=foreign, not_found=sum(1 for r in log if r["status"] == 404),
            calls_per_close={org: in_window[org] / max(closes[org], 1) for org in ORGS}, longest_gap=gaps,
            retries_per_close=retries / max(sum(done_after.values()) + 2 * sizes.singles, 1),
            load_average=load_average)
    finally:
        for worker in workers:
            worker.kill()
        emulator.stop()
        redis_server.stop()


def report_lines(figures: OrgsFigures) -> list[str]:
    sizes = figures.sizes
    shares = " | ".join(f"{figures.shares[org]:.3f}" for org in ORGS)
    calls = ", ".join(f"{org} {figures.calls_per_close[org]:.2f}" for org in ORGS)
    return [
        SECTION, "",
        f"Two workers x {sizes.concurrency}, three orgs at {LIMIT} requests/min per token each, one emulator process "
        "holding the three orgs, one orgs file (`bench/orgs_fairness.py`). Org B's single closes "
        f"(`close(wait=True)`, {sizes.singles} one after another) on an idle fleet, then while org A runs a "
        f"{sizes.a_bulk:,}-item bulk; then B and C start {sizes.other_bulk:,}-item bulks beside A's and every "
        f"org's requests are counted from the emulator's log (by the org of each token) over "
        f"{figures.window_seconds:.0f} s. The limiter keeps 3% headroom (0.97 is the most an org can use). "
        f"Measured {time.strftime('%Y-%m-%d')} on {os.cpu_count()} cores with a load average of "
        f"{figures.load_average:.1f} at the end of the window (the emulator, and other work on the machine, "
        "included).", "",
        "| | org A | org B | org C |", "|---|---|---|---|",
        f"| share of its own limit, all three bulks together | {shares} |",
        f"| closes in the window (calls per close: {calls}) | "
        + " | ".join(str(figures.closes[org]) for org in ORGS) + " |",
        "| longest time without a request of the org in the window | "
        + " | ".join(f"{figures.longest_gap[org]:.2f} s" for org in ORGS) + " |", "",
        "| org B single close: idle median | while A runs its bulk: median | ratio | A's share meanwhile |",
        "|---|---|---|---|",
        f"| {figures.idle_median:.2f} s | {figures.busy_median:.2f} s | {figures.latency_ratio:.2f}x | "
        f"{figures.a_requests_during_singles:.2f} |", "",
        f"CPU per close (both workers and Redis, user + system, in the window): **{figures.cpu_ms_per_close:.1f} "
        f"ms** ({figures.worker_cpu_seconds:.1f} s workers, {figures.redis_cpu_seconds:.1f} s Redis for "
        f"{figures.total_closes} closes). An org at its full rate finishes {figures.closes_per_second_per_org:.2f} "
        f"closes/s, so one {HOST_CORES}-core host with every core busy serves about "
        f"**{figures.orgs_per_host:.0f} orgs at full rate** (workers and Redis; Genesys, here the emulator, "
        "not on it). Bulk tasks handed back to the broker until their turn: "
        f"{figures.retries_per_close:.2f} per close. Requests with one org's token against another org's conversation: "
        f"{figures.foreign_requests}; 404s: {figures.not_found}.", ""]


def problems(figures: OrgsFigures, *, smoke: bool = False) -> list[str]:
    """What must never happen (every run), and the goals (full runs)."""
    found = []
    if figures.foreign_requests or figures.not_found:
        found.append(f"orgs: {figures.foreign_requests} request(s) with another org's token, "
                     f"{figures.not_found} 404(s)")
    found += [f"orgs: {org} finished no close in the window" for org in ORGS if figures.closes[org] <= 0]
    if smoke:
        return found
    found += [f"orgs: {org} used {figures.shares[org]:.3f} of its limit < {SHARE_GOAL}" for org in ORGS
              if figures.shares[org] < SHARE_GOAL]
    if figures.latency_ratio > LATENCY_GOAL:
        found.append(f"orgs: org B's single-close median {figures.latency_ratio:.2f}x idle > {LATENCY_GOAL}x")
    return found


if __name__ == "__main__":
    result = measure(OrgsSizes())
    print("\n".join(report_lines(result)))
    raise SystemExit(1 if problems(result) else 0)
