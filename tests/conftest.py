"""Shared fixtures: a real emulator over loopback HTTP, settings pointing at it."""

from __future__ import annotations

import os
import re
import shutil
from collections.abc import Generator, Iterator
from dataclasses import dataclass, field, replace
from pathlib import Path
from typing import Any

import pytest
import redis

from genesys_closer.config import WorkerSettings, load_worker_settings
from genesys_closer.emulator import EmulatorConfig, EmulatorServer, start_in_thread
from genesys_closer.emulator.admin import EmulatorAdmin
from genesys_closer.emulator.state import ALL_PERMISSIONS, Faults
from genesys_closer.shared.names import QUEUES
from genesys_closer.worker.factory import Service, build_service
from tests.services import CeleryWorker, RedisServer

# Hypothesis loads every installed "hypothesis" entry point when it is imported, at collection in each test process:
# here only trio's (selenium brings trio), for trio types no test uses: 0.18 CPU-seconds a process.
os.environ.setdefault("HYPOTHESIS_NO_PLUGINS", "1")


def settings_environment() -> tuple[frozenset[str], tuple[str, ...]]:
    """The environment variables the settings read, derived from the settings classes themselves (every
    ``BaseSettings`` in ``genesys_closer.config.settings``, each field's name or aliases, with the class's
    env_prefix), and the prefixes they share (``GENESYS_``, ``REDIS_``...), so that a new setting is covered
    without editing this file. Plus what the code reads outside the settings (``PROMETHEUS_MULTIPROC_DIR``)."""
    import inspect

    from pydantic import AliasChoices
    from pydantic_settings import BaseSettings

    from genesys_closer.config import settings as module

    names = {"PROMETHEUS_MULTIPROC_DIR"}
    for _, cls in inspect.getmembers(module, inspect.isclass):
        if not issubclass(cls, BaseSettings) or cls is BaseSettings:
            continue
        prefix = str(cls.model_config.get("env_prefix") or "")
        for field_name, info in cls.model_fields.items():
            aliases: list[object] = [info.alias, info.validation_alias]
            if isinstance(info.validation_alias, AliasChoices):
                aliases += info.validation_alias.choices
            names |= {(prefix + field_name).upper()} | {a.upper() for a in aliases if isinstance(a, str)}
    prefixes = tuple(sorted({name.split("_", 1)[0] + "_" for name in names}))
    return frozenset(names), prefixes


SETTINGS_NAMES, SETTINGS_PREFIXES = settings_environment()


@pytest.fixture(autouse=True)
def _clean_environment(monkeypatch: pytest.MonkeyPatch, tmp_path: Path) -> None:
    """Tests never read a developer's settings: every variable a settings class reads, and every variable under
    the prefixes they use (derived from the classes, see ``settings_environment``), is removed."""
    remove_settings_variables(monkeypatch)
    monkeypatch.chdir(tmp_path)  # no stray .env, and no test package shadowing a real one


def remove_settings_variables(monkeypatch: pytest.MonkeyPatch) -> None:
    import os

    for name in list(os.environ):
        if name.upper() in SETTINGS_NAMES or name.upper().startswith(SETTINGS_PREFIXES):
            monkeypatch.delenv(name, raising=False)


@pytest.fixture
def emulator_config() -> EmulatorConfig:
    return EmulatorConfig(consistency_delay_ms=150, seed=1234, rate_limit_per_minute=100_000)


@pytest.fixture
def emulator(emulator_config: EmulatorConfig) -> Iterator[EmulatorServer]:
    server = start_in_thread(config=emulator_config)
    try:
        yield server
    finally:
        server.stop()


@pytest.fixture
def admin(emulator: EmulatorServer) -> EmulatorAdmin:
    return EmulatorAdmin(emulator.base_url)


def emulator_settings(base_url: str, **overrides: object) -> WorkerSettings:
    values: dict[str, object] = {
        "genesys_client_id": "demo-client",
        "genesys_client_secret": "demo-secret",
        "genesys_api_url": base_url,
        "genesys_login_url": base_url,
        "genesys_rate_limit_per_minute": 100_000,
        "confirm_initial_delay_seconds": 0.2,
        "confirm_timeout_seconds": 3.0,
        "confirm_max_interval_seconds": 0.5,
        "retry_base_seconds": 0.05,
        "retry_max_attempts": 5,
    }
    values.update(overrides)
    return load_worker_settings(**values)


@pytest.fixture
def settings(emulator: EmulatorServer) -> WorkerSettings:
    return emulator_settings(emulator.base_url)


@pytest.fixture
def service(settings: WorkerSettings) -> Service:
    return build_service(settings)


@pytest.fixture(scope="session")
def redis_server(tmp_path_factory: pytest.TempPathFactory) -> Iterator[RedisServer]:
    """A real redis-server on a random loopback port, password-protected, AOF everysec, noeviction."""
    server = RedisServer(tmp_path_factory.mktemp("redis")).start()
    try:
        yield server
    finally:
        server.stop()


@pytest.fixture
def private_redis(tmp_path: Path) -> Iterator[RedisServer]:
    """A redis-server of this test's own, as the session's (AOF, password): for tests that stop, restart or flood
    it, which the shared one must never be."""
    server = RedisServer(tmp_path / "redis").start()
    try:
        yield server
    finally:
        server.stop()


@pytest.fixture
def redis_url(redis_server: RedisServer) -> str:
    """Database 0 of the session's Redis, emptied for this test (the shared fleet lives in database 1)."""
    redis_server.wait_ready()
    redis.Redis.from_url(redis_server.url).flushdb()
    return redis_server.url


@pytest.fixture
def redis_client(redis_url: str) -> redis.Redis:
    from genesys_closer.shared.redis_connection import connect

    return connect(redis_url)


@pytest.fixture
def logdir(tmp_path: Path) -> Path:
    return tmp_path / "logs"


# -- the shared fleet ------------------------------------------------------------------------------------------------
FLEET_DB = 1
FLEET_EMULATOR = EmulatorConfig(consistency_delay_ms=50, seed=7, rate_limit_per_minute=100_000, max_interval_days=7,
                                paging_cap=200)
FLEET_ENV = {
    "SWEEP_PAGING_CAP": 200,  # Genesys pages through 100,000 hits at most; the fleet's cap is scaled down
    "CLOSE_ALLOWED_POLICIES": "fail,participants",  # as the runbook advises; tests may ask for participants
}
# Two more orgs from an orgs file besides "default", each with an emulator of its own (its own clients, tokens,
# limits and conversations, as separate Genesys orgs are), so tests can prove one org's trouble stays its own.
FLEET_ORGS = ("org-a", "org-b")
# Their read timeout (the orgs file's read_timeout_seconds; the default org keeps GENESYS_READ_TIMEOUT_SECONDS, 15 s):
# their emulators answer in milliseconds, and a test of a host that never answers waits this long per request.
FLEET_ORG_READ_TIMEOUT_SECONDS = 5.0


def org_client(org: str) -> tuple[str, str]:
    """The OAuth client (id, secret) of one of the fleet's orgs in its emulator."""
    return f"{org}-client", f"{org}-secret"


def write_orgs_file(path: Path, emulators: dict[str, EmulatorServer], **fields: object) -> dict[str, str]:
    """An orgs file naming each org's emulator; returns the environment variables holding the secrets."""
    lines, env = [], {}
    for org, server in emulators.items():
        client_id, secret = org_client(org)
        variable = f"{org.upper().replace('-', '_')}_CLIENT_SECRET"
        env[variable] = secret
        lines += [f"[orgs.{org}]", f'api_url = "{server.base_url}"', f'client_id = "{client_id}"',
                  f'client_secret_env = "{variable}"', "rate_limit_per_minute = 60000",
                  'close_allowed_policies = ["fail", "participants"]',
                  *(f"{name} = {value!r}" for name, value in fields.items()), ""]
    path.write_text("\n".join(lines).replace("'", '"'))
    return env


@dataclass
class Fleet:
    """Two real `celery worker` processes (4 slots each) on database 1 of the session's Redis, against one emulator,
    shared by every test that runs with the default worker settings. ``reset`` gives each test a clean slate."""

    redis_url: str
    emulator: EmulatorServer
    workers: list[CeleryWorker]
    org_emulators: dict[str, EmulatorServer] = field(default_factory=dict)  # the orgs of FLEET_ORGS

    @property
    def admin(self) -> EmulatorAdmin:
        return EmulatorAdmin(self.emulator.base_url)

    def org_admin(self, org: str) -> EmulatorAdmin:
        return self.admin if org == "default" else EmulatorAdmin(self.org_emulators[org].base_url)

    def reset(self) -> None:
        """Healthy emulator without conversations, no genesys-closer state in Redis, empty queues. The broker's own
        keys (bindings) stay: the running workers need them."""
        self.admin.reset(conversations=True, faults=True)
        self.emulator.state.config = replace(FLEET_EMULATOR, faults=self.emulator.state.faults)
        for org, server in self.org_emulators.items():
            EmulatorAdmin(server.base_url).reset(conversations=True, faults=True)
            client_id, secret = org_client(org)
            server.state.config = replace(FLEET_EMULATOR, client_id=client_id, client_secret=secret,
                                          faults=server.state.faults)
            server.state.add_client(client_id, secret, ALL_PERMISSIONS)  # a test may have taken a permission away
        client = redis.Redis.from_url(self.redis_url)
        stale = list(client.scan_iter("genesys-closer:*", count=1000))
        if stale:
            client.delete(*stale)
        for queue in QUEUES:  # kombu's priority steps live in lists named queue + "\x06\x16" + step
            client.delete(queue, *client.scan_iter(f"{queue}\x06\x16*"))


@pytest.fixture(scope="session")
def fleet(redis_server: RedisServer, tmp_path_factory: pytest.TempPathFactory) -> Iterator[Fleet]:
    from tests.services import start_workers, worker_env

    url = redis_server.url.rsplit("/", 1)[0] + f"/{FLEET_DB}"
    emulator = start_in_thread(config=replace(FLEET_EMULATOR))
    orgs = {org: start_in_thread(config=replace(FLEET_EMULATOR, client_id=org_client(org)[0],
                                                client_secret=org_client(org)[1], faults=Faults()))
            for org in FLEET_ORGS}  # faults of its own: one org's storm is not another's
    orgs_file = tmp_path_factory.mktemp("fleet-orgs") / "orgs.toml"
    secrets = write_orgs_file(orgs_file, orgs, read_timeout_seconds=FLEET_ORG_READ_TIMEOUT_SECONDS)
    workers = start_workers(2, worker_env(url, emulator.base_url, ORGS_FILE=orgs_file, **FLEET_ENV, **secrets),
                            tmp_path_factory.mktemp("fleet-logs"), 4, prefix="fleet")
    try:
        yield Fleet(url, emulator, workers, orgs)
    finally:
        for worker in workers:
            worker.kill()
        emulator.stop()
        for server in orgs.values():
            server.stop()


@pytest.fixture
def on_fleet(fleet: Fleet) -> Fleet:
    """The shared fleet, reset for this test."""
    fleet.reset()
    return fleet


# The slow tests (chaos, failover, flaps, scale) are waits more than work: started first and spread over the test
# processes (scripts/test hands tests out one at a time, in this order), the longest ones overlap with each other
# and with the fast tests instead of running one after another at the end. Longest first, by file; the other slow
# tests next, then the rest. The Redis flap tests (about 1.5 min of outages and recoveries each) bound the suite's
# time. The console's browser tests (one unit of about 100 s, tests/scheduling.py) are mostly work: they start in the
# first wave beside the flap and failover tests, which mostly wait (measured 2026-12-02: idle core-seconds 71 to 38).
# The SDK's unit (44 s, in one process) starts before the quick tests rather than among the last units.
LONGEST_FIRST = ("test_redis_flap.py", "test_console_walk.py", "test_sentinel_failover.py", "test_chaos.py",
                 "test_batch_feed.py", "test_intake.py", "test_check.py", "test_analytics_variants.py",
                 "test_batches.py", "test_orgs.py", "test_sdk_contract.py", "test_install.py")
# Quick tests that mostly wait (retry backoffs, latency the emulator is told to add): 20 s of waiting that ran last,
# on cores left idle; handed out with the slow tests, they wait beside the fleet tests' work instead.
WAITING_QUICK = ("test_closer_emulator.py", "test_task_events.py")


def pytest_collection_modifyitems(items: list[pytest.Item]) -> None:
    from tests.scheduling import check_shared_process

    check_shared_process(items)

    def rank(item: pytest.Item) -> tuple[int, int]:
        name = item.path.name
        if name in LONGEST_FIRST:
            return (0, LONGEST_FIRST.index(name))
        waits = item.get_closest_marker("slow") is not None or name in WAITING_QUICK
        return (0, len(LONGEST_FIRST)) if waits else (1, 0)

    items.sort(key=rank)  # stable: every other test keeps its order


@pytest.hookimpl(tryfirst=True, optionalhook=True)  # optional: runs without xdist (-p no:xdist) know no such hook
def pytest_xdist_make_scheduler(config: pytest.Config, log: object) -> object | None:
    """With ``--dist loadgroup`` (scripts/test): tests/scheduling.py's scheduler; any other mode is xdist's own."""
    if config.getvalue("dist") != "loadgroup":
        return None
    from tests.scheduling import OneAtATimeGroups

    return OneAtATimeGroups(config, log)


FAILED_TEST_LOGS = Path(__file__).resolve().parent.parent / ".test-logs"


@pytest.hookimpl(wrapper=True)
def pytest_runtest_makereport(item: pytest.Item, call: pytest.CallInfo[None]) -> Generator[None, Any, Any]:
    """A failed test's logs (the ``*.log`` files under its ``tmp_path``: workers, beat, intake, emulator) are kept in
    ``.test-logs/<test>/``: pytest removes old temporary directories, and other runs on the machine rotate them away
    before anyone can read them."""
    report = yield
    tmp_path = getattr(item, "funcargs", {}).get("tmp_path")
    if report.failed and isinstance(tmp_path, Path) and tmp_path.is_dir():
        kept = FAILED_TEST_LOGS / re.sub(r"[^A-Za-z0-9_.-]+", "_", item.nodeid)[:150]
        for log in tmp_path.rglob("*.log"):
            target = kept / log.relative_to(tmp_path)
            target.parent.mkdir(parents=True, exist_ok=True)
            shutil.copyfile(log, target)
        if kept.is_dir():
            report.sections.append(("logs kept", str(kept)))
    return report
