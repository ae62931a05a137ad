"""Benchmarks: ``python -m bench.run`` (``scripts/bench``) runs every scenario in one go against the emulator and
writes ``docs/benchmarks.md`` with PNG plots. ``--smoke`` runs tiny versions that only check everything works.

1. Rate-limit use: our fleet with 1, 2 and 4 worker processes, the tutorial's approach, and Celery's own
   per-worker ``rate_limit`` (limit split across workers, and the full limit per worker), same batch and limit.
2. Overhead: no limit, 5 ms added latency: closes per second per process and CPU seconds per 1,000 closes.
3. Enqueue: 10,000 IDs with ``close_many`` against a ``.delay()`` loop; producer peak RSS (1,000 and 10,000).
4. Latency: one close on an idle system, enqueue to confirmed, p50/p95/p99, and the share in the confirm poll.
5. Requests per second over time with a 429 storm in the middle, ours against baseline (b).
6. Throughput per token (``bench/per_token.py``), and 6b the cost of verifying analytics confirmations
   (``bench/analytics_trust.py``).
7. The interactive lane (``bench/interactive_lane.py``).
8. A waiting 100,000-item batch, fed (the product) against one message per ID up front (``bench/batch_feed.py``).
9. Several orgs on one fleet: each org's share of its own limit with three bulks together, a single close of one
   org while another runs a bulk, CPU per close and orgs per host (``bench/orgs_fairness.py``).
10. What Flower that tells the truth costs the broker (``bench/flower_cost.py``).

``--only trust`` runs section 6b alone and replaces only that section of docs/benchmarks.md; ``--only orgs`` the
same for section 9, ``--only flower`` for section 10.
"""

from __future__ import annotations

import argparse
import contextlib
import json
import os
import platform
import shutil
import statistics
import subprocess
import sys
import tempfile
import time
from collections import Counter
from collections.abc import Callable, Iterator
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

import psutil
import redis
from celery.states import READY_STATES

from bench import analytics_trust, flower_cost, orgs_fairness
from bench.batch_feed import measure as measure_feed
from bench.batch_feed import problems as feed_problems
from bench.batch_feed import report_lines as feed_report
from bench.emulator_capacity import measure as measure_emulator_capacity
from bench.intake_capacity import measure as measure_intake_capacity
from bench.intake_capacity import problems as intake_problems
from bench.intake_capacity import report_lines as intake_report
from bench.interactive_lane import measure as measure_lane
from bench.per_token import TokenRow
from bench.per_token import measure as measure_per_token
from bench.per_token import table as per_token_table
from genesys_closer.config import load_producer_settings
from genesys_closer.emulator.admin import EmulatorAdmin
from genesys_closer.emulator.stack import CeleryWorker, EmulatorProcess, RedisServer, closer_env, start_workers
from genesys_closer.producer.api import CloseClient
from genesys_closer.shared.batches import ORIGIN_LIST, ORIGIN_SWEEP

REPO = Path(__file__).resolve().parent.parent


@dataclass
class Sizes:
    batch: int = 3000
    limit: int = 9000
    latency_ms: float = 10.0
    concurrency: int = 16
    overhead_closes: int = 600
    enqueue: tuple[int, ...] = (1000, 10_000)
    latency_runs: int = 200
    storm_batch: int = 1000
    storm_limit: int = 6000
    per_token_batch: int = 600
    per_token_limit: int = 3000
    lags: tuple[float, ...] = (0.3, 2.0, 30.0)
    per_token_at_default: int = 300
    lane_singles: int = 8
    lane_batch: int = 300
    trust_batch: int = 600
    trust_limit: int = 3000
    flower_batch: int = 2000  # the demo's batch
    flower_limit: int = 9000

    @classmethod
    def smoke(cls) -> Sizes:
        return cls(batch=120, limit=6000, concurrency=4, overhead_closes=40, enqueue=(200, 1000), latency_runs=10,
                   storm_batch=150, storm_limit=6000, per_token_batch=40, per_token_limit=6000, lags=(0.3,),
                   per_token_at_default=10,
                   lane_singles=2, lane_batch=30, trust_batch=60, trust_limit=6000, flower_batch=60,
                   flower_limit=6000)


@dataclass
class Run:
    name: str
    limit: int
    total: int
    closed: int
    requests: int
    rate_limited: int
    duration: float
    calls_per_close: float
    timeline: list[tuple[float, int]] = field(default_factory=list)
    extra: dict[str, Any] = field(default_factory=dict)

    @property
    def achieved_per_minute(self) -> float:
        return self.requests / self.duration * 60 if self.duration else 0.0

    @property
    def share_of_limit(self) -> float:
        return self.achieved_per_minute / self.limit if self.limit else 0.0

    @property
    def share_429(self) -> float:
        return self.rate_limited / self.requests if self.requests else 0.0


class Bench:
    def __init__(self, sizes: Sizes, workdir: Path) -> None:
        self.sizes = sizes
        self.workdir = workdir
        self.redis = RedisServer(workdir / "redis").start()
        self.emulator = EmulatorProcess(["--seed", "1"], workdir / "logs").start()
        self.admin: EmulatorAdmin = self.emulator.admin

    def close(self) -> None:
        self.emulator.stop()
        self.redis.stop()

    def fresh(self, count: int, **faults: Any) -> list[str]:
        redis.Redis.from_url(self.redis.url).flushall()
        self.admin.reset(conversations=True)
        defaults: dict[str, Any] = {"error_rate": 0, "drop_rate": 0, "spike_rate": 0, "burst_429": 0,
                                    "storm_429_seconds": 0, "latency_ms": 0, "rate_limit_per_minute": 10**9,
                                    "consistency_delay_ms": 300, "analytics_lag_ms": 2000}
        self.admin.faults(**(defaults | faults))
        self.admin.revoke_tokens()
        return self.admin.create(count) if count else []

    def env(self, **overrides: Any) -> dict[str, str]:
        return closer_env(self.redis.url, self.emulator.base_url, **overrides)

    def measure(self, name: str, limit: int, ids: list[str], work: Callable[[], None], **extra: Any) -> Run:
        self.admin.reset()
        work()
        log = [r for r in self.admin.requests() if r["route"] != "/oauth/token"]
        times = [r["t"] for r in log]
        stats = self.admin.stats()
        wanted = set(ids)  # the true state: a close the client did not confirm may still read as open for a moment
        closed = sum(1 for c in self.admin.conversations() if c["id"] in wanted and not c["open_internally"])
        duration = (max(times) - min(times)) if len(times) > 1 else 0.0
        return Run(name, limit, len(ids), closed, len(log), stats["responses_by_status"].get("429", 0), duration,
                   len(log) / max(closed, 1), [(r["t"], r["status"]) for r in log], extra)

    # -- the systems under test -------------------------------------------------------------------------------
    def ours(self, name: str, ids: list[str], limit: int, workers: int, concurrency: int,
             during: Callable[[], None] | None = None, origin: str = ORIGIN_LIST, **env: Any) -> Run:
        """Our fleet closes ``ids`` as one batch. Unless ``env`` says otherwise it takes the direct path (3 calls
        per close, what the baselines do too), which loads the rate limiter hardest; section 6 compares paths."""
        env = {"BATCHED_CHECKS": "false", **env}
        fleet = start_workers(workers, self.env(GENESYS_RATE_LIMIT_PER_MINUTE=limit, **env),
                              self.workdir / "logs", concurrency, prefix=f"ours{workers}-")
        client = CloseClient(load_producer_settings(redis_url=self.redis.url))
        records: list[dict[str, Any]] = []
        try:
            def work() -> None:
                # A sweep-origin batch is what the worker's sweep starts for its candidates (skips the first read).
                batch_id = client.batches_writer.start(ids, options={}, origin=origin)
                batch = client.batch(batch_id)
                if during is not None:
                    during()
                batch.wait(timeout=1800)
                records.extend(r.as_dict() for r in batch.results())
            return self.measure(name, limit, ids, work, records=records)
        finally:
            for worker in fleet:
                worker.stop()

    def tutorial(self, name: str, ids: list[str], limit: int) -> Run:
        from bench.tutorial_baseline import TutorialCloser

        closer = TutorialCloser(self.emulator.base_url, "demo-client", "demo-secret")

        def work() -> None:
            for cid in ids:
                closer.close_conversation_with_retry(cid)
        return self.measure(name, limit, ids, work, failures=len(closer.failures))

    def celery_rate_limit(self, name: str, ids: list[str], limit: int, workers: int, per_worker_tasks_per_minute: float,
                          concurrency: int, during: Callable[[], None] | None = None,
                          deadline_seconds: float = 100.0) -> Run:
        """Runs until every task finished or ``deadline_seconds`` passed; the table shows how many closed."""
        env = self.env(BENCH_TASK_RATE_LIMIT=f"{per_worker_tasks_per_minute:.0f}/m",
                       PYTHONPATH=f"{REPO}{os.pathsep}{os.environ.get('PYTHONPATH', '')}")
        procs = [self._start_baseline_worker(CeleryWorker(f"baseline{i + 1}", env, self.workdir / "logs", concurrency))
                 for i in range(workers)]
        try:
            from bench.celery_baseline import TASK, app

            app.conf.broker_url = app.conf.result_backend = self.redis.url

            def work() -> None:
                # Polled with plain reads: a result.get() subscribes, and results still pending at the deadline
                # would then raise from Celery's result backend at interpreter exit, when Redis is gone.
                pending = {app.send_task(TASK, args=[cid]).id for cid in ids}
                if during is not None:
                    during()
                deadline = time.monotonic() + deadline_seconds
                while pending and time.monotonic() < deadline:
                    order = list(pending)
                    metas = app.backend.client.mget([app.backend.get_key_for_task(tid) for tid in order])
                    pending = {tid for tid, meta in zip(order, metas, strict=True)
                               if meta is None or json.loads(meta).get("status") not in READY_STATES}
                    time.sleep(0.5)
            return self.measure(name, limit, ids, work)
        finally:
            for proc in procs:
                proc.terminate()
            for proc in procs:
                proc.wait(timeout=30)

    def _start_baseline_worker(self, worker: CeleryWorker) -> subprocess.Popen[bytes]:
        log = (self.workdir / "logs" / f"{worker.name}.log").open("ab")
        proc = subprocess.Popen([sys.executable, "-m", "celery", "-A", "bench.celery_baseline", "worker", "-n",
                                 worker.hostname, "-c", str(worker.concurrency), "-Q", "baseline", "-l", "WARNING",
                                 "--without-gossip", "--without-mingle"], env=worker.env, cwd=REPO,
                                stdout=log, stderr=subprocess.STDOUT)
        time.sleep(4)  # the baseline has no readiness probe of its own; its first tasks simply wait in the queue
        return proc


class Steps:
    """Progress on stderr: one line when a scenario starts and one when it ends, with its time."""

    def __init__(self, total: int, *, start: int = 1, of: int | None = None) -> None:
        self.number = start
        self.total = of or total

    @contextlib.contextmanager
    def __call__(self, name: str) -> Iterator[None]:
        number, self.number = self.number, self.number + 1
        print(f"[{number}/{self.total}] {name} ...", file=sys.stderr, flush=True)
        started = time.monotonic()
        yield
        print(f"[{number}/{self.total}] {name}: done in {time.monotonic() - started:.0f} s", file=sys.stderr,
              flush=True)


# -- scenarios ----------------------------------------------------------------------------------------------------
def scenario_rate_limit(bench: Bench) -> list[Run]:
    s = bench.sizes
    runs = []
    for workers in ((1, 2) if s.batch < 1000 else (1, 2, 4)):
        ids = bench.fresh(s.batch, rate_limit_per_minute=s.limit, latency_ms=s.latency_ms)
        runs.append(bench.ours(f"genesys-closer, {workers} worker process(es) x {s.concurrency}", ids, s.limit,
                               workers, s.concurrency))
    ids = bench.fresh(s.batch, rate_limit_per_minute=s.limit, latency_ms=s.latency_ms)
    runs.append(bench.tutorial("(a) tutorial approach", ids, s.limit))
    per_close = 3.0  # the same algorithm: GET, PATCH, GET
    ids = bench.fresh(s.batch, rate_limit_per_minute=s.limit, latency_ms=s.latency_ms)
    runs.append(bench.celery_rate_limit("(b) Celery rate_limit, limit split over 2 workers", ids, s.limit, 2,
                                        s.limit / per_close / 2, s.concurrency))
    ids = bench.fresh(s.batch, rate_limit_per_minute=s.limit, latency_ms=s.latency_ms)
    runs.append(bench.celery_rate_limit("(b) Celery rate_limit, full limit per worker (2 workers)", ids, s.limit, 2,
                                        s.limit / per_close, s.concurrency))
    return runs


def cpu_seconds(procs: list[psutil.Process]) -> float:
    total = 0.0
    for proc in procs:
        for p in [proc, *proc.children(recursive=True)]:
            try:
                times = p.cpu_times()
                total += times.user + times.system
            except psutil.Error:
                pass
    return total


def scenario_overhead(bench: Bench) -> dict[str, dict[str, float]]:
    s = bench.sizes
    results: dict[str, dict[str, float]] = {}
    ids = bench.fresh(s.overhead_closes, latency_ms=5, consistency_delay_ms=0)
    [worker] = start_workers(1, bench.env(GENESYS_RATE_LIMIT_PER_MINUTE=10**6, CONFIRM_INITIAL_DELAY_SECONDS=0),
                             bench.workdir / "logs", concurrency=1, prefix="overhead-")
    try:
        assert worker.process is not None
        proc = psutil.Process(worker.process.pid)
        client = CloseClient(load_producer_settings(redis_url=bench.redis.url))
        before = cpu_seconds([proc])
        started = time.monotonic()
        client.close_many(ids).wait(timeout=900)
        elapsed = time.monotonic() - started
        used = cpu_seconds([proc]) - before
        results["genesys-closer (1 process, GET + PATCH + confirming GET)"] = {
            "closes_per_second": len(ids) / elapsed, "cpu_seconds_per_1000": used / len(ids) * 1000}
    finally:
        worker.stop()
    ids = bench.fresh(s.overhead_closes, latency_ms=5, consistency_delay_ms=0)
    from bench.tutorial_baseline import TutorialCloser

    closer = TutorialCloser(bench.emulator.base_url, "demo-client", "demo-secret")
    me = psutil.Process()
    before = sum(me.cpu_times()[:2])
    started = time.monotonic()
    for cid in ids:
        closer.close_conversation_with_retry(cid)
    elapsed = time.monotonic() - started
    used = sum(me.cpu_times()[:2]) - before
    results["(a) tutorial approach (1 process, PATCH only)"] = {
        "closes_per_second": len(ids) / elapsed, "cpu_seconds_per_1000": used / len(ids) * 1000}
    return results


ENQUEUE_SCRIPT = """
import json, resource, sys, time, uuid
from genesys_closer.config import load_producer_settings
from bench.emulator_capacity import measure as measure_emulator_capacity
from bench.interactive_lane import measure as measure_lane
from bench.intake_capacity import measure as measure_intake_capacity
from bench.per_token import TokenRow
from bench.per_token import measure as measure_per_token
from bench.per_token import table as per_token_table
from genesys_closer.producer.api import CloseClient
from genesys_closer.shared.batches import ORIGIN_LIST, ORIGIN_SWEEP
mode, count, url = sys.argv[1], int(sys.argv[2]), sys.argv[3]
client = CloseClient(load_producer_settings(redis_url=url))
ids = (str(uuid.uuid4()) for _ in range(count))
started = time.perf_counter()
if mode == "close_many":
    client.close_many(ids)
else:
    from genesys_closer.worker.tasks import close_conversation
    for cid in ids:
        close_conversation.delay(cid)
elapsed = time.perf_counter() - started
print(json.dumps({"seconds": elapsed, "peak_rss_mib": resource.getrusage(resource.RUSAGE_SELF).ru_maxrss / 1024}))
"""


def scenario_enqueue(bench: Bench) -> dict[str, dict[str, float]]:
    results = {}
    for mode in ("close_many", "delay loop"):
        for count in bench.sizes.enqueue:
            redis.Redis.from_url(bench.redis.url).flushall()
            out = subprocess.run([sys.executable, "-c", ENQUEUE_SCRIPT, mode.split()[0], str(count), bench.redis.url],
                                 capture_output=True, text=True, check=True, cwd=REPO,
                                 env={**os.environ, "REDIS_URL": bench.redis.url})
            results[f"{mode} {count:,}"] = json.loads(out.stdout.strip().splitlines()[-1])
    return results


def scenario_latency(bench: Bench) -> dict[str, float]:
    s = bench.sizes
    ids = bench.fresh(s.latency_runs)
    [worker] = start_workers(1, bench.env(GENESYS_RATE_LIMIT_PER_MINUTE=10**6), bench.workdir / "logs", concurrency=2,
                             prefix="latency-")
    try:
        client = CloseClient(load_producer_settings(redis_url=bench.redis.url))
        totals, confirms = [], []
        for cid in ids:
            started = time.perf_counter()
            result = client.close(cid, wait=True, timeout=60)
            totals.append(time.perf_counter() - started)
            confirms.append(result.confirm_seconds or 0.0)  # type: ignore[union-attr]
    finally:
        worker.stop()
    quantiles = statistics.quantiles(totals, n=100)
    return {"p50": quantiles[49], "p95": quantiles[94], "p99": quantiles[98],
            "confirm_share": statistics.mean(confirms) / statistics.mean(totals), "runs": len(totals),
            "consistency_delay": 0.3}


def scenario_storm(bench: Bench) -> list[Run]:
    s = bench.sizes
    runs = []

    def storm() -> None:
        time.sleep(max(3.0, s.storm_batch * 3 / (s.storm_limit / 60) / 3))
        bench.admin.faults(storm_429_seconds=10)

    ids = bench.fresh(s.storm_batch, rate_limit_per_minute=s.storm_limit, latency_ms=s.latency_ms)
    runs.append(bench.ours("genesys-closer (2 workers)", ids, s.storm_limit, 2, s.concurrency, during=storm))
    ids = bench.fresh(s.storm_batch, rate_limit_per_minute=s.storm_limit, latency_ms=s.latency_ms)
    runs.append(bench.celery_rate_limit("(b) Celery rate_limit, split (2 workers)", ids, s.storm_limit, 2,
                                        s.storm_limit / 3 / 2, s.concurrency, during=storm, deadline_seconds=60))
    return runs


# -- report -------------------------------------------------------------------------------------------------------
def plot_timelines(runs: list[Run], path: Path, title: str) -> None:
    import matplotlib

    matplotlib.use("Agg")
    import matplotlib.pyplot as plt

    fig, axes = plt.subplots(len(runs), 1, figsize=(9, 2.6 * len(runs)), sharex=True)
    for ax, run in zip(axes if len(runs) > 1 else [axes], runs, strict=True):
        if not run.timeline:
            continue
        start = run.timeline[0][0]
        ok, limited = Counter(), Counter()
        for t, status in run.timeline:
            (limited if status == 429 else ok)[int(t - start)] += 1
        seconds = range(int(run.timeline[-1][0] - start) + 1)
        ax.bar(seconds, [ok[x] for x in seconds], width=1.0, color="#2b7bba", label="answered")
        ax.bar(seconds, [limited[x] for x in seconds], bottom=[ok[x] for x in seconds], width=1.0,
               color="#d7301f", label="429")
        ax.axhline(run.limit / 60, color="black", linestyle="--", linewidth=1, label="limit")
        ax.set_title(run.name, fontsize=10)
        ax.set_ylabel("requests/s")
        ax.legend(loc="upper right", fontsize=8)
    axes_list = axes if len(runs) > 1 else [axes]
    axes_list[-1].set_xlabel("seconds since the first request")
    fig.suptitle(title)
    fig.tight_layout()
    fig.savefig(path, dpi=90)
    plt.close(fig)


def plot_bars(runs: list[Run], path: Path) -> None:
    import matplotlib

    matplotlib.use("Agg")
    import matplotlib.pyplot as plt

    fig, ax = plt.subplots(figsize=(9, 3.8))
    names = [r.name.replace(", ", ",\n", 1) for r in runs]
    ax.barh(names, [r.share_of_limit for r in runs], color=["#2b7bba"] * 3 + ["#999999"] * (len(runs) - 3))
    ax.axvline(1.0, color="black", linestyle="--", linewidth=1)
    ax.set_xlabel("achieved request rate / limit")
    ax.invert_yaxis()
    fig.tight_layout()
    fig.savefig(path, dpi=90)
    plt.close(fig)


def machine() -> str:
    cpu = "unknown CPU"
    with contextlib.suppress(OSError, StopIteration):
        cpu = next(line.split(":", 1)[1].strip() for line in Path("/proc/cpuinfo").read_text().splitlines()
                   if line.startswith("model name"))
    versions = {}
    for package in ("celery", "kombu", "redis", "requests", "tenacity"):
        try:
            from importlib.metadata import version

            versions[package] = version(package)
        except Exception:
            versions[package] = "?"
    server = subprocess.run(["redis-server", "--version"], capture_output=True, text=True, check=False).stdout.split()
    redis_version = next((w.split("=")[1] for w in server if w.startswith("v=")), "?")
    return (f"{platform.system()} {platform.machine()}, {os.cpu_count()} cores ({cpu}), "
            f"{psutil.virtual_memory().total / 2**30:.0f} GiB; Python {platform.python_version()}, "
            + ", ".join(f"{k} {v}" for k, v in versions.items()) + f", redis-server {redis_version}")


def report(sizes: Sizes, rate: list[Run], sweep: Run, overhead: dict[str, dict[str, float]],
           enqueue: dict[str, dict[str, float]], latency: dict[str, float], storm: list[Run], out: Path,
           elapsed: float, capacity: dict[str, float], intake: dict[str, float], per_token: list[TokenRow],
           lane: dict[str, float], trust: list[analytics_trust.TrustRow], feed: dict[str, float],
           orgs: orgs_fairness.OrgsFigures, flower: list[flower_cost.FlowerRow] | None = None) -> str:
    img = out / "img"
    img.mkdir(parents=True, exist_ok=True)
    plot_bars(rate, img / "rate-limit-use.png")
    plot_timelines(storm, img / "429-storm.png", "Requests per second, 10 s 429 storm in the middle")
    shown = [run for run in rate if run.name.startswith(("genesys-closer, 2 worker", "(b) Celery rate_limit"))]
    plot_timelines(shown, img / "timelines.png", "Requests per second over a batch")  # chosen by name, any sizes
    lines = [
        "# Benchmarks", "",
        f"Generated by `scripts/bench` (`python -m bench.run`) on {time.strftime('%Y-%m-%d')} in {elapsed / 60:.1f} "
        "minutes. Every figure below comes from that one run, measured side by side against the bundled emulator.",
        "", f"Machine: {machine()}.", "",
        "## 1. Rate-limit use", "",
        f"Batch of {sizes.batch:,} open web messaging conversations, emulator limit L = {sizes.limit:,} requests/min "
        f"per token, {sizes.latency_ms:g} ms added latency, 300 ms eventual consistency. The fleet is configured "
        f"with the same L (it uses 97% of it by default). Our fleet takes the direct path here (a read before and "
        "after each PATCH, as the baselines do), which loads the limiter hardest; section 6 compares it with batched "
        "checks.", "",
        "| system | achieved rate / L | 429s / requests | API calls per closed conversation | closed | time |",
        "|---|---|---|---|---|---|",
    ]
    for run in [*rate, sweep]:
        lines.append(f"| {run.name} | {run.share_of_limit:.3f} | {run.share_429:.2%} | {run.calls_per_close:.2f} | "
                     f"{run.closed:,}/{run.total:,} | {run.duration:.0f} s |")
    lines += ["", "Baseline (b) runs stop after 100 s (60 s in section 5); `closed` shows how far they got. The "
              "tutorial approach sends only the PATCH (no read, no confirmation), so its calls per close are lower "
              "and its `closed` count is what the emulator holds, not something it verified. Baseline (b) fetches "
              "one token per worker process; the emulator counts the limit per token (Genesys documents "
              "`client.credentials.token.rate.per.minute`), so with the full limit per worker its many tokens went "
              "past L without 429s, which a per-client limit would have refused. `close_many` stores a batch's IDs in "
              "Redis and publishes only its first `BATCH_IN_FLIGHT` items (the rest are fed as items end, section "
              "8); it also validates every ID first, de-duplicates, and keeps the producer's memory flat."]
    lines += ["", "![rate-limit use](img/rate-limit-use.png)", "", "![timelines](img/timelines.png)", "",
              "The sweep row closes candidates already known to be open web messaging (`skip_initial_get`), as "
              "`genesys-closer sweep` does, on the direct path (2 calls each: the PATCH and the confirming read); "
              "with batched checks, the default, a sweep close costs about one call (section 6).", "",
              "## 2. Overhead", "",
              "No rate limit, 5 ms added latency, no consistency delay; one worker process with concurrency 1.", "",
              "| system | closes per second per process | CPU seconds per 1,000 closes |", "|---|---|---|"]
    for name, row in overhead.items():
        lines.append(f"| {name} | {row['closes_per_second']:.1f} | {row['cpu_seconds_per_1000']:.1f} |")
    lines += ["", "## 3. Enqueue", "", "| producer | seconds | IDs per second | peak RSS |", "|---|---|---|---|"]
    for name, row in enqueue.items():
        count = int(name.split()[-1].replace(",", ""))
        lines.append(f"| {name} | {row['seconds']:.2f} | {count / row['seconds']:,.0f} | "
                     f"{row['peak_rss_mib']:.0f} MiB |")
    lines += ["", "## 4. Latency of one close on an idle system", "",
              f"{latency['runs']:.0f} closes, enqueue to confirmed outcome (`close(wait=True)`), no rate limit (at "
              "Genesys' 300/min the fleet also spaces requests 0.2 s apart), emulator with no "
              "added "
              f"latency and its default {latency['consistency_delay'] * 1000:.0f} ms eventual consistency.", "",
              "| p50 | p95 | p99 | share of the time spent in the confirm poll |", "|---|---|---|---|",
              f"| {latency['p50'] * 1000:.0f} ms | {latency['p95'] * 1000:.0f} ms | {latency['p99'] * 1000:.0f} ms | "
              f"{latency['confirm_share']:.0%} |", "",
              "## 5. A 429 storm in the middle of a batch", "",
              "| system | 429s | 429s / requests | closed | time |", "|---|---|---|---|---|"]
    for run in storm:
        lines.append(f"| {run.name} | {run.rate_limited:,} | {run.share_429:.2%} | {run.closed:,}/{run.total:,} | "
                     f"{run.duration:.0f} s |")
    lines += ["", "![429 storm](img/429-storm.png)", "",
              "## Emulator capacity", "",
              f"The emulator answered {capacity['requests_per_second']:,.0f} authenticated "
              "`GET /api/v2/conversations/messages/{id}` per second while pinned to one core (`taskset -c 0`), "
              "driven by two keep-alive client processes on the other core (`bench/emulator_capacity.py`): it is "
              "never the bottleneck of the figures above.", "",
              *intake_report(intake)]
    lines += ["## 6. Throughput per token: the direct path against batched checks", "",
              f"{sizes.per_token_batch:,} open web messaging conversations per row at L = "
              f"{sizes.per_token_limit:,} requests/min, and {sizes.per_token_at_default:,} in the last row at "
              f"Genesys' own 300/min; two workers x {sizes.concurrency}. The direct path reads each "
              "conversation before and after its PATCH (a sweep candidate skips the first read); the batched path "
              "pre-checks and confirms with analytics reads by id (up to 100 conversations per call, a read counted "
              "as its share per item) and falls back to the direct path for what analytics does not show. Analytics "
              "lags reality by the given time (`--analytics-lag-ms`).", "", *per_token_table(per_token), "",
              "*limit used (while sending)*: requests per minute over L from the first request to the last PATCH. "
              "*closes/min (whole run)* includes the wait for the last confirmations, which the lag makes long "
              "for a short run. *At Genesys' 300/min (derived)*: 300 x limit used / calls per close. A read is made "
              "as soon as 20 items are due for it (or the oldest has waited 5 s), so its share per item, and with "
              "it the calls per close, hardly depends on the rate: the last row measures it at 300/min.", "",
              *analytics_trust.section(trust, sizes.trust_batch, sizes.trust_limit, sizes.concurrency),
              "## 7. Interactive lane", "",
              f"A single `close(wait=True)` at Genesys' 300 requests/min, two workers x 8, enqueue to confirmed "
              f"outcome; {lane['singles']:.0f} closes one after another on an idle fleet, then as many while a "
              f"{sizes.lane_batch}-item bulk batch fills the limit (`bench/interactive_lane.py`).", "",
              "| idle fleet: median | during the bulk batch: median | during the bulk batch: max |",
              "|---|---|---|",
              f"| {lane['idle_median']:.2f} s | {lane['busy_median']:.2f} s | {lane['busy_max']:.2f} s |", "",
              *feed_report(feed), "", *orgs_fairness.report_lines(orgs)]
    if flower is not None:
        lines += flower_cost.section(flower, sizes.flower_batch, sizes.flower_limit, sizes.concurrency)
    text = "\n".join(lines)
    (out / "benchmarks.md").write_text(text)
    return text


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--smoke", action="store_true", help="tiny sizes: check that every scenario works")
    parser.add_argument("--out", type=Path, default=REPO / "docs", help="where benchmarks.md and img/ go")
    parser.add_argument("--only", choices=["trust", "orgs", "flower"], help="run one section alone and update only "
                        "it in benchmarks.md (trust: 6b, the cost of verifying analytics confirmations; orgs: 9, "
                        "several orgs on one fleet; flower: 10, what Flower's truthful task states cost the broker)")
    args = parser.parse_args(argv)
    sizes = Sizes.smoke() if args.smoke else Sizes()
    if args.only == "trust":
        return only_trust(sizes, args.out, smoke=args.smoke)
    if args.only == "orgs":
        return only_orgs(args.out, smoke=args.smoke)
    if args.only == "flower":
        return only_flower(sizes, args.out, smoke=args.smoke)
    workdir = Path(tempfile.mkdtemp(prefix="genesys-closer-bench-"))
    started = time.monotonic()
    bench = Bench(sizes, workdir)
    step = Steps(12, of=14)
    try:
        with step("rate-limit use: our fleet, the tutorial, Celery's rate_limit"):
            rate = scenario_rate_limit(bench)
        with step("emulator capacity"):
            capacity = measure_emulator_capacity(seconds=2.0 if args.smoke else 5.0)
        with step("HTTP intake capacity"):
            intake = (measure_intake_capacity(seconds=2.0, processes=2, threads=4, upload_ids=10_000) if args.smoke
                      else measure_intake_capacity(seconds=5.0))
        with step("sweep candidates"):
            sweep_ids = bench.fresh(min(sizes.batch, 600), rate_limit_per_minute=sizes.limit,
                                    latency_ms=sizes.latency_ms)
            sweep = bench.ours("genesys-closer, sweep candidates, direct path (2 workers)", sweep_ids, sizes.limit, 2,
                               sizes.concurrency, origin=ORIGIN_SWEEP)
        with step("overhead per close"):
            overhead = scenario_overhead(bench)
        with step("enqueue"):
            enqueue = scenario_enqueue(bench)
        with step("latency of one close"):
            latency = scenario_latency(bench)
        with step("429 storm"):
            storm = scenario_storm(bench)
        with step(f"throughput per token: direct vs batched path, analytics lag {', '.join(map(str, sizes.lags))} s"):
            per_token = measure_per_token(bench, sizes.per_token_batch, sizes.per_token_limit, sizes.lags,
                                          sizes.concurrency, sizes.per_token_at_default)
        with step("trust but verify: sampled analytics confirmations"):
            trust = analytics_trust.measure(bench, sizes.trust_batch, sizes.trust_limit, sizes.concurrency)
        with step("Flower that tells the truth: its broker cost"):
            flower = flower_cost.measure(bench, sizes.flower_batch, sizes.flower_limit, sizes.concurrency)
    finally:
        bench.close()
    with Steps(1, start=12, of=14)("interactive lane: a single close during a bulk batch at 300/min"):
        lane = measure_lane(singles=sizes.lane_singles, batch=sizes.lane_batch)
    with Steps(1, start=13, of=14)("a waiting batch: fed against one message per ID up front"):
        feed = measure_feed(10_000 if args.smoke else 100_000)
    with Steps(1, start=14, of=14)("several orgs on one fleet: three at 300/min each"):
        orgs = orgs_fairness.measure(orgs_fairness.OrgsSizes.smoke() if args.smoke else orgs_fairness.OrgsSizes())
    text = report(sizes, rate, sweep, overhead, enqueue, latency, storm, args.out, time.monotonic() - started,
                  capacity, intake, per_token, lane, trust, feed, orgs, flower)
    print(text)
    shutil.rmtree(workdir, ignore_errors=True)
    ours = [run for run in [*rate, sweep, *storm] if run.name.startswith("genesys-closer")]
    problems = [f"{run.name}: closed {run.closed}/{run.total}" for run in ours if run.closed != run.total]
    problems += [f"{run.name}: {run.share_429:.1%} 429s" for run in rate if run.name.startswith("genesys-closer")
                 and run.share_429 > 0.005]
    batched = [row for row in per_token if row.path == "batched"]
    problems += [f"{row.run.name}: closed {row.run.closed}/{row.run.total}" for row in per_token
                 if row.run.closed != row.run.total]
    if not args.smoke:
        problems += [f"{row.run.name}: {row.run.calls_per_close:.2f} calls per close > 1.2" for row in batched
                     if row.lag_seconds <= 2 and row.run.calls_per_close > 1.2]
        if lane["busy_median"] > 3.0:
            problems.append(f"interactive lane: median {lane['busy_median']:.2f} s > 3 s")
    found = analytics_trust.problems(trust)
    problems += found if not args.smoke else [p for p in found if "calls per close" not in p]
    # A smoke run checks that the intake works (its upload is accepted); its ratios (share of a plain loop, p99 growth,
    # closes answered meanwhile) need the full run's sizes and a quiet machine, like the calls-per-close checks above.
    problems += [p for p in intake_problems(intake) if not args.smoke or "-id upload got" in p]
    problems += feed_problems(feed)
    problems += orgs_fairness.problems(orgs, smoke=args.smoke)
    problems += flower_cost.problems(flower, smoke=args.smoke)
    if problems:
        print("BENCHMARK CHECK FAILED: " + "; ".join(problems), file=sys.stderr)
        return 1
    print(f"benchmark check passed ({'smoke' if args.smoke else 'full'} run)")
    return 0


def only_orgs(out: Path, *, smoke: bool = False) -> int:
    """Section 9 alone, spliced into the existing benchmarks.md (a smoke run prints it and writes nothing)."""
    with Steps(1)("several orgs on one fleet: three at 300/min each"):
        figures = orgs_fairness.measure(orgs_fairness.OrgsSizes.smoke() if smoke else orgs_fairness.OrgsSizes())
    lines = [*orgs_fairness.report_lines(figures),
             "This section was measured on its own (`python -m bench.run --only orgs`), not in the run above.", ""]
    print("\n".join(lines))
    if not smoke:
        splice_section(out / "benchmarks.md", orgs_fairness.SECTION, lines)
    found = orgs_fairness.problems(figures, smoke=smoke)
    if found:
        print("BENCHMARK CHECK FAILED: " + "; ".join(found), file=sys.stderr)
        return 1
    print(f"benchmark check passed ({'smoke' if smoke else 'full'} run of section 9)")
    return 0


def only_flower(sizes: Sizes, out: Path, *, smoke: bool = False) -> int:
    """Section 10 alone: both rows side by side in one run, spliced into the existing benchmarks.md (a smoke run
    prints it and writes nothing)."""
    workdir = Path(tempfile.mkdtemp(prefix="genesys-closer-bench-"))
    bench = Bench(sizes, workdir)
    try:
        with Steps(1)("Flower that tells the truth: its broker cost"):
            rows = flower_cost.measure(bench, sizes.flower_batch, sizes.flower_limit, sizes.concurrency)
    finally:
        bench.close()
    lines = flower_cost.section(rows, sizes.flower_batch, sizes.flower_limit, sizes.concurrency)
    print("\n".join(lines))
    if not smoke:  # a smoke run prints its figures and writes nothing
        splice_section(out / "benchmarks.md", flower_cost.SECTION, lines)
    shutil.rmtree(workdir, ignore_errors=True)
    found = flower_cost.problems(rows, smoke=smoke)
    if found:
        print("BENCHMARK CHECK FAILED: " + "; ".join(found), file=sys.stderr)
        return 1
    return 0


def splice_section(path: Path, heading: str, lines: list[str]) -> None:
    """Replace the section under ``heading`` in ``path`` (up to the next ``## ``), or add it at the end."""
    text = path.read_text() if path.exists() else ""
    start = text.find(heading)
    if start < 0:
        start = end = len(text)
        lines = ["", *lines] if text and not text.endswith("\n\n") else lines
    else:
        end = text.find("\n## ", start + 1)
        end = len(text) if end < 0 else end + 1
    path.write_text(text[:start] + "\n".join(lines) + "\n" + text[end:])


def only_trust(sizes: Sizes, out: Path, *, smoke: bool = False) -> int:
    """Section 6b alone: its rows side by side in one run, spliced into the existing benchmarks.md."""
    workdir = Path(tempfile.mkdtemp(prefix="genesys-closer-bench-"))
    bench = Bench(sizes, workdir)
    try:
        with Steps(1)("trust but verify: sampled analytics confirmations"):
            rows = analytics_trust.measure(bench, sizes.trust_batch, sizes.trust_limit, sizes.concurrency)
    finally:
        bench.close()
    lines = analytics_trust.section(rows, sizes.trust_batch, sizes.trust_limit, sizes.concurrency)
    print("\n".join(lines))
    path = out / "benchmarks.md"
    text = path.read_text() if path.exists() else ""
    start = text.find(analytics_trust.SECTION)
    if start < 0:
        start = end = text.find("## 7. ") if "## 7. " in text else len(text)
    else:
        end = text.find("\n## ", start + 1)
        end = len(text) if end < 0 else end + 1
    path.write_text(text[:start] + "\n".join(lines) + "\n" + text[end:])
    shutil.rmtree(workdir, ignore_errors=True)
    found = [p for p in analytics_trust.problems(rows) if not smoke or "calls per close" not in p]
    if found:
        print("BENCHMARK CHECK FAILED: " + "; ".join(found), file=sys.stderr)
        return 1
    return 0


if __name__ == "__main__":
    sys.exit(main())
