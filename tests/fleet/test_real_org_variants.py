"""Real orgs answer differently: where public evidence leaves Genesys' answer open, the emulator gives each
plausible answer and the fleet must end every item right under each."""

from __future__ import annotations

import json
from collections import Counter

import pytest
import redis

from genesys_closer.config.redis_keys import KEYS, client_digest
from genesys_closer.emulator.admin import EmulatorAdmin
from genesys_closer.producer.api import CloseClient
from genesys_closer.shared.batches import ORIGIN_SWEEP
from genesys_closer.shared.outcomes import Outcome
from tests.fleet.conftest import cli


@pytest.mark.parametrize(("status", "outcome"), [(403, "forbidden"), (404, "not_found")])
def test_division_refusals_stay_with_their_items(admin: EmulatorAdmin, client: CloseClient,
                                                 redis_client: redis.Redis, status: int, outcome: str) -> None:
    """40 conversations in a division the client is not granted, in runs of 10 among 80 others."""
    admin.faults(restricted_status=status)
    ids: list[str] = []
    for _ in range(4):
        ids += admin.create(10, "restricted") + admin.create(20)
    status_ = client.close_many(ids, label="divisions").wait(timeout=120)
    assert status_.counts == {"closed": 80, outcome: 40}
    assert redis_client.get(KEYS.breaker(client_digest("demo-client"), "open")) is None  # the breaker stayed closed
    if status == 403:
        errors = {r.error_code for r in client.batch(status_.batch_id).results() if r.outcome is Outcome.FORBIDDEN}
        assert errors == {"missing.division.permission"}


@pytest.mark.parametrize("type_on", ["customer", "all"])
def test_web_messaging_is_decided_from_the_customer(admin: EmulatorAdmin, client: CloseClient, type_on: str) -> None:
    admin.faults(participant_type_on=type_on)
    status = client.close_many(admin.create(5) + admin.create(2, "sms") + admin.create(2, "bot")).wait(timeout=60)
    assert status.counts == {"closed": 7, "not_web_messaging": 2}


@pytest.mark.parametrize("reclose", [409, 400, 404, 200])
def test_every_reclose_answer_ends_right(admin: EmulatorAdmin, client: CloseClient, reclose: int) -> None:
    """Sweep candidates skip the first read, so closing an already closed conversation is routine for them."""
    admin.faults(reclose_status=reclose)
    closed_before, still_open = admin.create(4, "disconnected"), admin.create(4)
    batch_id = client.batches_writer.start(closed_before + still_open, options={}, origin=ORIGIN_SWEEP)
    client.batch(batch_id).wait(timeout=60)
    outcomes = {r.conversation_id: r.outcome for r in client.batch(batch_id).results()}
    assert {outcomes[c] for c in closed_before} == {Outcome.ALREADY_CLOSED}
    assert {outcomes[c] for c in still_open} == {Outcome.CLOSED}


def test_after_call_work_is_handled_or_reported(admin: EmulatorAdmin, client: CloseClient) -> None:
    admin.faults(wrapup_codes=["resolved"])
    plain, coded, bogus = admin.create(3)
    left = client.close(plain, wait=True, timeout=60)
    assert left.outcome is Outcome.CLOSED and left.wrapups_pending == 1  # type: ignore[union-attr]
    done = client.close(coded, wait=True, timeout=60, wrapup_code="resolved")
    assert (done.wrapups_applied, done.wrapups_pending) == (1, 0)  # type: ignore[union-attr]
    refused = client.close(bogus, wait=True, timeout=60, wrapup_code="bogus")
    assert (refused.wrapups_applied, refused.wrapups_pending) == (0, 1)  # type: ignore[union-attr]
    admin.faults(acw_after_patch=False)  # the org applies a system wrap-up itself
    [system] = admin.create(1)
    assert client.close(system, wait=True, timeout=60).wrapups_pending == 0  # type: ignore[union-attr]


def test_sweeps_leave_parked_conversations_alone(admin: EmulatorAdmin, client: CloseClient, redis_url: str) -> None:
    parked, idle = admin.create(3, "parked", age_minutes=180), admin.create(3, age_minutes=180)
    dry = cli(redis_url, "--json", "sweep", "--min-age-minutes", "60", "--dry-run")
    events = [json.loads(line) for line in dry.stdout.splitlines()]
    candidates = {c["conversation_id"]: c for c in events if c["event"] == "candidate"}
    assert {c for c, row in candidates.items() if row["chosen"]} == set(idle)
    assert all("parked" in candidates[c]["reason"] for c in parked)
    assert cli(redis_url, "sweep", "--min-age-minutes", "60").returncode == 0
    assert {admin.conversation(c)["open"] for c in parked} == {True}
    assert cli(redis_url, "sweep", "--min-age-minutes", "60", "--include-parked").returncode == 0
    assert {admin.conversation(c)["open"] for c in parked + idle} == {False}


def test_old_stuck_conversations_are_found(admin: EmulatorAdmin, redis_url: str) -> None:
    [sixty_days] = admin.create(1, age_minutes=60 * 24 * 60)
    default = cli(redis_url, "--json", "sweep", "--dry-run")
    assert sixty_days not in default.stdout  # the default lookback is 30 days
    found = cli(redis_url, "--json", "sweep", "--lookback-days", "90", "--dry-run")
    assert f'"conversation_id":"{sixty_days}"' in found.stdout.replace(" ", "")
    too_far = cli(redis_url, "sweep", "--lookback-days", "91", "--dry-run")
    assert too_far.returncode == 2 and "at most 90" in too_far.stderr


def test_intervals_are_split_under_the_paging_cap(admin: EmulatorAdmin, redis_url: str) -> None:
    """The fleet's emulator and workers page through at most 200 hits (Genesys: 100,000)."""
    day = 24 * 60
    ids = {cid for days in (1, 2, 3) for cid in admin.create(150, age_minutes=days * day)}  # 450 over three days
    dry = cli(redis_url, "--json", "sweep", "--min-age-minutes", "60", "--lookback-days", "7", "--dry-run")
    events = [json.loads(line) for line in dry.stdout.splitlines()]
    summary = next(e for e in events if e["event"] == "sweep")
    assert summary["splits"] >= 2 and summary["candidates"] == 450 and summary["unreachable"] == 0
    assert {e["conversation_id"] for e in events if e["event"] == "candidate"} == ids
    statuses = Counter(r["status"] for r in admin.requests() if "analytics" in r["route"])
    assert set(statuses) == {200}  # no query paged past the cap
