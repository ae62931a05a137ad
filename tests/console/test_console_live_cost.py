"""Twenty browsers watching one batch cost one Redis read per interval, not twenty: the console's live views share
each read (``live.SharedReads``). A real ``genesys-closer serve`` on a Redis of its own (its command statistics
count only this intake), twenty Server-Sent Events streams at once."""

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
