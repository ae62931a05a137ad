"""What the console costs and what bounds it, on a real ``genesys-closer serve`` with a Redis of its own (its command
statistics count only this intake): twenty browsers watching one batch cost one Redis read per interval, not twenty
(``live.SharedReads``), and the console takes the API's per-credential rate limit."""

from __future__ import annotations

import time
import uuid
from collections.abc import Iterator
from concurrent.futures import ThreadPoolExecutor
from pathlib import Path

import pytest
import requests

from genesys_closer.emulator.stack import RedisServer
from genesys_closer.shared.redis_connection import connect
from genesys_closer.shared.stores import ResultStores
from tests.fleet.intake_server import TOKEN_A, Intake, running_intake

VIEWERS = 20
BEATS = 6  # events (data or keep-alive) each viewer reads before it leaves
INTERVAL = 0.5


@pytest.fixture
def private_intake(tmp_path: Path) -> Iterator[tuple[Intake, RedisServer]]:
    server = RedisServer(tmp_path / "redis").start()
    try:
        with running_intake(server.url, tmp_path / "intake.log", CONSOLE_LIVE_SECONDS=INTERVAL) as intake:
            yield intake, server
    finally:
        server.stop()


def watch(url: str) -> int:
    """Read one stream until BEATS events came; returns how many carried data."""
    beats = data = 0
    with requests.get(url, headers={"Authorization": f"Bearer {TOKEN_A}"}, stream=True, timeout=60) as answer:
        assert answer.status_code == 200 and answer.headers["content-type"].startswith("text/event-stream")
        for line in answer.iter_lines(decode_unicode=True):
            if line.startswith("data:"):
                data += 1
            if line.startswith(("data:", ": still")):
                beats += 1
                if beats >= BEATS:
                    return data
    return data


def test_twenty_viewers_share_one_read_per_interval(private_intake: tuple[Intake, RedisServer]) -> None:
    intake, server = private_intake
    client = connect(server.url)
    batch_id = uuid.uuid4().hex
    ResultStores.open(client, 3600).batches.create(batch_id, label="watched")  # running for ever: never ends
    client.config_resetstat()
    started = time.monotonic()
    with ThreadPoolExecutor(VIEWERS) as pool:
        data_events = list(pool.map(watch, [f"{intake.url}/v1/batches/{batch_id}/events"] * VIEWERS))
    elapsed = time.monotonic() - started
    reads = int(client.info("commandstats").get("cmdstat_hgetall", {}).get("calls", 0))
    assert data_events == [1] * VIEWERS  # each viewer got the status once (then only keep-alives: nothing changed)
    # One shared read per interval at most (plus the first): a read per viewer per beat would be VIEWERS * BEATS.
    assert reads <= elapsed / INTERVAL + 2, (reads, elapsed)
    assert reads < VIEWERS * BEATS / 4


def test_the_console_takes_the_api_rate_limit(tmp_path: Path) -> None:
    """A login and the session's calls take slots of the credential's limit, shared with its bearer calls; login
    attempts are limited per client address too (5 a minute here: one slot every 12 s, a burst of one)."""
    server = RedisServer(tmp_path / "redis").start()
    try:
        with running_intake(server.url, tmp_path / "intake.log", INTAKE_RATE_LIMIT_PER_MINUTE=5) as intake:
            browser = requests.Session()
            form = browser.get(f"{intake.url}/ui/login", timeout=10).text
            csrf = form.split('name="csrf" value="', 1)[1].split('"', 1)[0]
            logged_in = browser.post(f"{intake.url}/ui/login", data={"csrf": csrf, "token": TOKEN_A},
                                     allow_redirects=False, timeout=10)
            assert logged_in.status_code == 303 and "gc_console" in browser.cookies
            limited = browser.get(f"{intake.url}/v1/batches", timeout=10)  # the login took the credential's slot
            assert limited.status_code == 429 and int(limited.headers["Retry-After"]) >= 1
            assert intake.call("GET", "/v1/batches").status_code == 429  # the same credential by its token
            form = browser.get(f"{intake.url}/ui/login", timeout=10).text
            csrf = form.split('name="csrf" value="', 1)[1].split('"', 1)[0]
            again = browser.post(f"{intake.url}/ui/login", data={"csrf": csrf, "token": "wrong" * 4}, timeout=10)
            assert again.status_code == 429  # this address's login attempts
    finally:
        server.stop()


def test_a_lost_redis_ends_the_streams_and_the_intake_keeps_answering(
        private_intake: tuple[Intake, RedisServer]) -> None:
    """Redis gone: an open stream says so and ends (the browser retries by itself), every call is 503 in the
    intake's error shape, and the intake itself stays up (its liveness answers). The call is made while the stream
    ends (each waits out the intake's retries of a refused Redis connection, about 3 s): side by side."""
    intake, server = private_intake
    batch_id = uuid.uuid4().hex
    ResultStores.open(connect(server.url), 3600).batches.create(batch_id, label="watched")
    events: list[str] = []
    with ThreadPoolExecutor(1) as pool:
        with requests.get(f"{intake.url}/v1/batches/{batch_id}/events",
                          headers={"Authorization": f"Bearer {TOKEN_A}"}, stream=True, timeout=60) as answer:
            for line in answer.iter_lines(decode_unicode=True):
                if line.startswith("event:"):
                    events.append(line)
                if line.startswith("data:") and events == ["event: message"]:
                    server.stop()  # after the first status: Redis goes away under an open stream
                    calling = pool.submit(intake.call, "GET", f"/v1/batches/{batch_id}")
        refused = calling.result()
    assert events == ["event: message", "event: unavailable"]
    assert refused.status_code == 503 and refused.json()["error"]["code"] == "unavailable"
    assert requests.get(f"{intake.url}/healthz", timeout=10).status_code == 200
