"""Fair sharing of one fleet between orgs, through the real pieces: one emulator holding two orgs, an orgs file, a real
worker with two pool processes. Org ``slow`` allows 120 requests/min, so its six bulk items mostly find no slot near
and hand their tasks back until their turn (Celery retries that keep their retry count) instead of sleeping on the
limiter with a pool process; org ``fast`` closes a bulk and a single close meanwhile.

What must never happen: an item lost or closed twice, a request above the slow org's limit, a request of one org
with the other's token, a hand-back counted as a failure. How fast each org goes beside the other is a benchmark
figure (``bench/orgs_fairness.py``, docs/benchmarks.md section 9).
"""

from __future__ import annotations

import re
from pathlib import Path

import pytest

from genesys_closer.config import ProducerSettings
from genesys_closer.emulator import EmulatorConfig, EmulatorServer
from genesys_closer.emulator.admin import EmulatorAdmin
from genesys_closer.emulator.state import OrgSpec
from genesys_closer.producer.api import CloseClient
from genesys_closer.shared.outcomes import Outcome
from tests.e2e.conftest import StartWorkers
from tests.waiting import max_in_window

SLOW_LIMIT = 120
SLOW_ITEMS = 6  # two pool processes at once, slots half a second apart (> the 0.3 s held): items hand back
ORGS = {"slow": ("slow-client", "slow-secret", SLOW_LIMIT), "fast": ("fast-client", "fast-secret", 60_000)}


@pytest.fixture
def emulator_config() -> EmulatorConfig:
    return EmulatorConfig(consistency_delay_ms=50, seed=31, rate_limit_per_minute=100_000,
                          orgs=tuple(OrgSpec(org, client, secret, limit) for org, (client, secret, limit)
                                     in ORGS.items()))


def orgs_file(path: Path, base_url: str) -> dict[str, str]:
    lines, env = [], {}
    for org, (client_id, secret, limit) in ORGS.items():
        variable = f"{org.upper()}_CLIENT_SECRET"
        env[variable] = secret
        lines += [f"[orgs.{org}]", f'api_url = "{base_url}"', f'login_url = "{base_url}"',
                  f'client_id = "{client_id}"', f'client_secret_env = "{variable}"',
                  f"rate_limit_per_minute = {limit}", ""]
    path.write_text("\n".join(lines))
    return env


def test_a_saturated_org_hands_back_and_the_other_closes_beside_it(
        start: StartWorkers, admin: EmulatorAdmin, producer_settings: ProducerSettings, emulator: EmulatorServer,
        tmp_path: Path) -> None:
    secrets = orgs_file(tmp_path / "orgs.toml", emulator.base_url)
    [worker] = start(1, concurrency=2, orgs_file=tmp_path / "orgs.toml", **secrets)
    slow, fast = CloseClient(producer_settings, org="slow"), CloseClient(producer_settings, org="fast")
    slow_ids, fast_ids = admin.create(SLOW_ITEMS, org="slow"), admin.create(20, org="fast")
    [single] = admin.create(1, org="fast")
    slow_batch = slow.close_many(slow_ids, label="slow bulk")
    fast_batch = fast.close_many(fast_ids, label="fast bulk")
    record = fast.close(single, wait=True, timeout=60)
    assert record is not None and record.outcome is Outcome.CLOSED  # type: ignore[union-attr]
    assert fast_batch.wait(timeout=60).counts == {"closed": 20}
    status = slow_batch.wait(timeout=120)
    assert status.counts == {"closed": SLOW_ITEMS}
    assert all(r.error is None for r in slow_batch.results())  # a hand-back is no failure

    log = [r for r in admin.requests() if r["route"] != "/oauth/token"]
    owner = dict.fromkeys(slow_ids, "slow") | dict.fromkeys([*fast_ids, single], "fast")
    for row in log:  # every request named only conversations of its own token's org, and was answered
        assert {owner[cid] for cid in row["conversation_id"].split(",")} == {row["org"]}, row
        assert row["status"] in {200, 202}, row
    slow_times = [r["t"] for r in log if r["org"] == "slow"]
    assert max_in_window(slow_times, 60.0) <= SLOW_LIMIT
    assert max_in_window(slow_times, 5.0) <= SLOW_LIMIT / 12 + 2  # smooth: one early request per pool process
    orgs = admin.orgs()
    assert orgs["slow"]["conversation_patches"] == SLOW_ITEMS and orgs["fast"]["conversation_patches"] == 21
    assert orgs["slow"]["duplicate_conversation_patches"] == orgs["fast"]["duplicate_conversation_patches"] == 0
    # The slow org's items were handed back (Celery logs each as a retry, with its reason), and waiting for a turn
    # is no failure: no record counts it as an attempt, so it never uses up TASK_MAX_RETRIES.
    assert re.search(r"close_conversation\[[^\]]+\] retry: waiting for its turn at the rate limit",
                     worker.log_path.read_text())
    assert {r.attempts for r in slow_batch.results()} == {1}
