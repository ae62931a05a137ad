"""The `genesys-closer` command line as a real process (one smoke per command group) against real workers, Redis and
the emulator. Most CLI behaviour is tested in-process on the shared fleet (tests/fleet/test_cli.py)."""

from __future__ import annotations

import os
import subprocess
import sys
from concurrent.futures import ThreadPoolExecutor
from pathlib import Path

import pytest
from typer.testing import CliRunner

from genesys_closer.config import load_producer_settings
from genesys_closer.emulator import EmulatorConfig
from genesys_closer.emulator.admin import EmulatorAdmin
from genesys_closer.producer import cli as cli_module
from genesys_closer.producer.api import CloseClient
from tests.e2e.conftest import StartWorkers
from tests.services import RedisServer, free_port
from tests.waiting import wait_until

CLI = [str(Path(sys.executable).with_name("genesys-closer"))]  # the installed console script


@pytest.fixture
def emulator_config() -> EmulatorConfig:
    return EmulatorConfig(consistency_delay_ms=50, seed=3, rate_limit_per_minute=100_000, max_interval_days=7)


def cli(redis_url: str, *args: str, stdin: str | None = None, timeout: float = 180) -> subprocess.CompletedProcess[str]:
    return subprocess.run([*CLI, "--redis-url", redis_url, *args], input=stdin, capture_output=True, text=True,
                          timeout=timeout, check=False)


COMMANDS = ("close", "bulk", "sweep", "status", "results", "cancel", "retry", "batches", "outcome", "rejected")


def test_help_for_every_command(redis_url: str) -> None:
    for command in COMMANDS:
        shown = CliRunner().invoke(cli_module.app, [command, "--help"])
        assert shown.exit_code == 0 and "Example" in shown.stdout, shown.stdout
    top = cli(redis_url, "--help")  # the real console entry point, once
    assert top.returncode == 0 and "Exit status: 0 every item succeeded" in " ".join(top.stdout.split())


def test_bulk_dry_run_enqueues_nothing(redis_url: str, tmp_path: Path) -> None:
    source = tmp_path / "ids.txt"
    good = "3b47a74f-a827-4166-ae62-f6ba6d7268ae"
    source.write_text(f"{good}\n{good.upper()}\nnot-an-id\n../x\n")
    run = cli(redis_url, "bulk", str(source), "--dry-run")
    assert run.returncode == 1  # invalid IDs found
    assert "1 valid unique IDs" in run.stdout and "2 invalid" in run.stdout and "1 duplicates" in run.stdout
    assert "item 3" in run.stdout and "item 4" in run.stdout
    assert cli(redis_url, "--json", "batches").stdout == ""


def test_status_cancel_and_retry(start: StartWorkers, admin: EmulatorAdmin, redis_url: str, tmp_path: Path) -> None:
    """Real processes for the batch command group: bulk --detach, cancel, status --watch, retry --policy."""
    start(1, concurrency=2, genesys_rate_limit_per_minute=600, task_max_retries=0, retry_max_attempts=1,
          close_allowed_policies="fail,participants")  # as the runbook says for retry --policy participants
    client = CloseClient(load_producer_settings(redis_url=redis_url))
    ids = admin.create(150)  # 15 s at 600/min: the cancel (a CLI process, slow to start when loaded) comes mid-batch
    source = tmp_path / "ids.txt"
    source.write_text("\n".join(ids))
    started = cli(redis_url, "bulk", str(source), "--detach")
    batch_id = started.stdout.split()[1]
    wait_until(lambda: client.batch(batch_id).status().done >= 3, timeout=30)
    cancelled = cli(redis_url, "cancel", batch_id)
    assert "[cancelled]" in cancelled.stdout
    watched = cli(redis_url, "status", batch_id, "--watch")
    assert "cancelled=" in watched.stdout and watched.returncode == 1
    # Failures: every API call answers 5xx and the workers may not retry.
    admin.faults(error_rate=1.0)
    few = tmp_path / "few.txt"
    few.write_text("\n".join(admin.create(8)))
    failing = cli(redis_url, "bulk", str(few))
    failing_id = failing.stdout.split()[1]
    assert "failed=8" in failing.stdout and failing.returncode == 1
    admin.faults(error_rate=0.0)
    retried = cli(redis_url, "retry", failing_id, "--outcome", "failed", "--policy", "participants")
    assert retried.returncode == 0, retried.stdout + retried.stderr
    assert "closed=8" in retried.stdout and "failed=" not in retried.stdout.splitlines()[-1]
    assert len(admin.conversations(open="true")) == len([r for r in client.batch(batch_id).results()
                                                           if r.outcome.value == "cancelled"])


def test_errors_are_one_line_with_documented_exit_codes(redis_url: str, redis_server: RedisServer) -> None:
    """The real console script, with nothing but Redis (no worker): every failure is one line and its exit code.
    The failing runs are independent processes, run side by side (each waits: a close's timeout, a Redis retried)."""
    cid = "3b47a74f-a827-4166-ae62-f6ba6d7268ae"
    down = f"redis://127.0.0.1:{free_port()}/0"
    wrong_password = redis_url.replace(redis_server.password, "wrong")
    wrong_db = redis_url.rsplit("/", 1)[0] + "/99"
    cases = ((down, "cannot reach Redis"), (wrong_password, "cannot reach Redis"),
             (wrong_db, "Redis refused a command"))
    with ThreadPoolExecutor(len(cases) + 2) as pool:
        closing = pool.submit(cli, redis_url, "close", cid, "--timeout", "2")
        no_file = pool.submit(cli, redis_url, "bulk", "/no/such/file")
        runs = [(pool.submit(subprocess.run, [*CLI, "--redis-url", url, "batches"], capture_output=True, text=True,
                             timeout=120, check=False), says)  # a CLI that retried forever would hit the timeout
                for url, says in cases]
        queued = closing.result()
        assert queued.returncode == 3 and "queued" in queued.stderr and "genesys-closer outcome" in queued.stderr
        for running, says in runs:
            run = running.result()
            assert run.returncode == 3 and says in run.stderr, run.stderr
            assert len(run.stderr.strip().splitlines()) == 1 and "Traceback" not in run.stderr
        usage = no_file.result()
        assert usage.returncode == 2 and len(usage.stderr.strip().splitlines()) == 1


def test_producer_commands_need_only_redis(redis_url: str) -> None:
    """Worker-only settings may be absent or invalid: the producer side never reads them."""
    env = {"PATH": os.environ["PATH"], "REDIS_URL": redis_url, "GENESYS_RATE_LIMIT_PER_MINUTE": "0",
           "CLOSE_POLICY": "explode"}
    run = subprocess.run([*CLI, "batches"], env=env, capture_output=True, text=True, timeout=60, check=False)
    assert run.returncode == 0, run.stderr


@pytest.mark.parametrize(("env", "says"), [
    ({}, "INTAKE_TOKENS"),
    ({"INTAKE_TOKENS": "short"}, "at least 16 characters"),
    ({"INTAKE_BASIC_AUTH": "no-colon"}, "user:password"),
    ({"INTAKE_BASIC_AUTH": "admin:password123"}, "password must be at least 16 characters"),
])
def test_serve_refuses_to_start_without_auth(redis_url: str, env: dict[str, str], says: str) -> None:
    run = subprocess.run([*CLI, "--redis-url", redis_url, "serve", "--port", str(free_port())],
                         env={"PATH": os.environ["PATH"], **env}, capture_output=True, text=True, timeout=60,
                         check=False)
    assert run.returncode == 2 and says in run.stderr and len(run.stderr.strip().splitlines()) == 1, run.stderr
