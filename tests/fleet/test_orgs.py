"""Several Genesys orgs in one deployment, through the shared fleet: the orgs ``default`` (the GENESYS_* variables),
``org-a`` and ``org-b`` (the fleet's orgs file), each with its own emulator, so one org's requests can only ever
reach its own (as separate Genesys orgs are told apart by their credentials and region host).

What must never happen: an org's outcome in another org's records, a request of one org with another org's
token, a close for an org the workers do not serve reaching any Genesys, and one org's 429 storm, revoked token
or missing permission changing anything for the others.
"""

from __future__ import annotations

import pytest
import redis
from celery import Celery

from genesys_closer.config.redis_keys import client_digest, keys_for
from genesys_closer.config.settings import ProducerSettings
from genesys_closer.emulator.admin import EmulatorAdmin
from genesys_closer.producer.api import CloseClient
from genesys_closer.shared.arguments import InvalidArgument
from genesys_closer.shared.names import TASK_NAME
from genesys_closer.shared.outcomes import CloseResult, Outcome
from tests.conftest import FLEET_ORG_READ_TIMEOUT_SECONDS, FLEET_ORGS, Fleet, org_client
from tests.waiting import wait_until

ORGS = ("default", *FLEET_ORGS)
TOKEN_ROUTE = "POST /oauth/token"


STORM_SECONDS = 600  # longer than the waits on the others can take (2 x (120 + 60) s): the test lifts it once done
WINDOW = 40  # a batch's in-flight bound here (BATCH_IN_FLIGHT, 300 by default): a batch beyond it is fed by refills


def clients(settings: ProducerSettings, in_flight: int | None = None) -> dict[str, CloseClient]:
    if in_flight is not None:
        settings = settings.model_copy(update={"batch_in_flight": in_flight})
    return {org: CloseClient(settings, org=org) for org in ORGS}


def client_ids_seen(admin: EmulatorAdmin) -> set[str]:
    """The OAuth clients whose tokens (or credentials) the emulator's requests carried."""
    return {row["client_id"] for row in admin.requests() if row.get("client_id")}


def test_three_orgs_close_their_own_conversations_at_once(on_fleet: Fleet, producer_settings: ProducerSettings,
                                                          redis_client: redis.Redis) -> None:
    by_org = clients(producer_settings, in_flight=WINDOW)
    sizes = {"default": 30, "org-a": 2 * WINDOW, "org-b": 30}  # org-a's is fed beyond its first in-flight window
    ids = {org: on_fleet.org_admin(org).create(sizes[org]) for org in ORGS}
    singles = {org: on_fleet.org_admin(org).create(1)[0] for org in ORGS}
    batches = {org: by_org[org].close_many(ids[org], label=f"bulk of {org}") for org in ORGS}
    tasks = {org: by_org[org].close(singles[org]) for org in ORGS}
    for org in ORGS:
        status = batches[org].wait(timeout=120)
        assert status.org == org and status.counts == {"closed": sizes[org]}, (org, status)
        assert {r.org for r in batches[org].results()} == {org}
        single = by_org[org].result(str(tasks[org]), timeout=60)
        assert single.outcome is Outcome.CLOSED and single.org == org
        stored = by_org[org].outcome(singles[org])
        assert stored is not None and stored.org == org and stored.outcome is Outcome.CLOSED
        assert [s.batch_id for s in by_org[org].batches()] == [batches[org].id]  # each org lists its own batch
    for org in ORGS:  # records are keyed by org: nobody reads another org's batches
        for other in ORGS:
            if other != org:
                assert by_org[org].results.batches.status(batches[other].id) is None
    # The emulators are seeded alike, so the orgs hold the same conversation ids: each id's record is per org.
    # One more conversation in org-a only: its outcome is org-a's alone, and org-b's Genesys does not know it.
    # (The default org's emulator may have created more conversations in earlier tests, so one of its ids can be
    # this one's: take one that none of this test's other conversations has.)
    taken = {cid for org in ORGS for cid in [*ids[org], singles[org]] if org != "org-a"}
    extra = [on_fleet.org_admin("org-a").create(1)[0]]
    while extra[-1] in taken:
        extra.append(on_fleet.org_admin("org-a").create(1)[0])
    only_a = extra[-1]
    for cid in extra:
        assert by_org["org-a"].close(cid, wait=True, timeout=60).outcome is Outcome.CLOSED  # type: ignore[union-attr]
    assert by_org["default"].outcome(only_a) is None and by_org["org-b"].outcome(only_a) is None
    assert by_org["org-b"].close(only_a, wait=True, timeout=60).outcome is Outcome.NOT_FOUND  # type: ignore[union-attr]
    a_record = by_org["org-a"].outcome(only_a)
    assert a_record is not None and a_record.outcome is Outcome.CLOSED and a_record.org == "org-a"
    own = {"default": "demo-client"} | {org: org_client(org)[0] for org in FLEET_ORGS}
    for org in ORGS:  # no request of an org carried another org's token
        assert client_ids_seen(on_fleet.org_admin(org)) == {own[org]}
        assert all(not c["open"] for c in on_fleet.org_admin(org).conversations())
        assert redis_client.exists(keys_for(org).token(own[org]))  # each org's own token, under its own key


def test_an_org_the_workers_do_not_serve_is_refused_before_any_genesys_call(
        on_fleet: Fleet, producer_settings: ProducerSettings, redis_url: str, redis_client: redis.Redis) -> None:
    [cid] = on_fleet.admin.create(1)
    nowhere = CloseClient(producer_settings.model_copy(update={"batch_in_flight": WINDOW}), org="no-such-org")
    record = nowhere.close(cid, wait=True, timeout=60)
    assert isinstance(record, CloseResult) and record.outcome is Outcome.INVALID_REQUEST
    assert "unknown org 'no-such-org'" in (record.error or "")
    assert not [org for org in ORGS if org in (record.error or "")]  # a caller learns no org the workers serve
    assert not list(redis_client.scan_iter("genesys-closer:{no-such-org}:*"))  # a message creates no org's state
    assert any(entry["conversation_id"] == cid and entry["org"] == "no-such-org"
               for entry in CloseClient(producer_settings).rejected())  # kept with the default org's rejected
    batch = nowhere.close_many([cid, *on_fleet.admin.create(2 * WINDOW - 1)])  # more than one in-flight window
    status = batch.wait(timeout=120)
    assert status.counts == {"invalid_request": 2 * WINDOW} and status.org == "no-such-org"
    # a name that is no org name at all is refused by the producer, and by the worker when sent raw
    with pytest.raises(InvalidArgument, match="org name"):
        CloseClient(producer_settings, org="../Eu_Prod")
    raw = Celery("raw", broker=redis_url, backend=redis_url).send_task(TASK_NAME, args=[cid], kwargs={"org": "x" * 500})
    refused = raw.get(timeout=60)
    assert refused["outcome"] == "invalid_request" and len(refused["error"]) < 200
    assert any(entry["conversation_id"] == cid for entry in CloseClient(producer_settings).rejected())
    for org in ORGS:  # not one request about it reached any org's Genesys
        assert not [row for row in on_fleet.org_admin(org).requests() if row.get("conversation_id") == cid]
    assert on_fleet.admin.conversation(cid)["open"] is True


def _trouble(trouble: str, admin: EmulatorAdmin, org: str) -> None:
    if trouble == "429 storm":  # every request of the org answered 429 ("retry in 1 s") until the test lifts it
        admin.faults(storm_429_seconds=STORM_SECONDS, storm_429_retry_after=1)
    elif trouble == "revoked token":
        admin.revoke_tokens()
    else:  # every role of the org's OAuth client lost the disconnect permission
        client_id, secret = org_client(org)
        admin.add_client(client_id, secret, deny=["conversation:communication:disconnect"])


@pytest.mark.parametrize("trouble", ["429 storm", "revoked token", "missing permission"])
def test_one_orgs_trouble_changes_nothing_for_the_others(on_fleet: Fleet, producer_settings: ProducerSettings,
                                                         redis_client: redis.Redis, trouble: str) -> None:
    troubled, others = FLEET_ORGS[0], ("default", FLEET_ORGS[1])
    by_org = clients(producer_settings)
    for org in ORGS:  # every org has a token and a warm limiter before the trouble starts
        assert by_org[org].close(on_fleet.org_admin(org).create(1)[0], wait=True, timeout=60).outcome \
            is Outcome.CLOSED  # type: ignore[union-attr]
    marks = {org: len(on_fleet.org_admin(org).requests()) for org in ORGS}
    _trouble(trouble, on_fleet.org_admin(troubled), troubled)
    batches = {org: by_org[org].close_many(on_fleet.org_admin(org).create(30)) for org in ORGS}
    keys_a = keys_for(troubled)
    if trouble == "429 storm":  # the storm reached its org: the org's limiter paused
        wait_until(lambda: redis_client.exists(keys_a.rate_limit(client_digest(org_client(troubled)[0]), "pause")),
                   timeout=60, message="the troubled org's fleet pause")
    for org in others:
        status = batches[org].wait(timeout=120)
        assert status.counts == {"closed": 30}, (org, status)
        assert by_org[org].close(on_fleet.org_admin(org).create(1)[0], wait=True, timeout=60).outcome \
            is Outcome.CLOSED  # type: ignore[union-attr]
        seen = on_fleet.org_admin(org).requests()[marks[org]:]
        assert not [row for row in seen if row["status"] in (401, 403, 429)], org
        assert not [row for row in seen if row["route"] == TOKEN_ROUTE], org  # its token was never refreshed
        own = keys_for(org)
        bucket = client_digest("demo-client" if org == "default" else org_client(org)[0])
        assert not redis_client.exists(own.rate_limit(bucket, "pause"), own.breaker(bucket, "open"))
    if trouble == "missing permission":  # the troubled org's breaker stopped its own batch, nothing else
        wait_until(lambda: batches[troubled].status().finished, timeout=120, message="the troubled batch to end")
        ended = batches[troubled].status()
        assert ended.state == "stopped" and set(ended.counts) <= {"forbidden", "not_attempted"}
        assert redis_client.exists(keys_a.breaker(client_digest(org_client(troubled)[0]), "open"))
        return
    if trouble == "429 storm":  # the others were checked while it raged; now it ends
        assert on_fleet.org_admin(troubled).faults()["storm_429_seconds"] > 0
        on_fleet.org_admin(troubled).faults(storm_429_seconds=0)
    ended = batches[troubled].wait(timeout=180)  # after its trouble, the troubled org's batch lost nothing
    assert ended.counts == {"closed": 30}
    logs = "".join(worker.log_path.read_text(errors="replace") for worker in on_fleet.workers)
    assert not [org for org in FLEET_ORGS if org_client(org)[1] in logs]  # no org's secret in any log line


@pytest.mark.slow  # an org's requests time out (its own read timeout, 5 s each) before the gate closes
def test_an_org_whose_genesys_does_not_answer_holds_no_pool_process_the_others_need(
        on_fleet: Fleet, producer_settings: ProducerSettings, redis_client: redis.Redis) -> None:
    """A host that accepts connections and never answers costs each request a whole read timeout. Before the
    reachability gate, 24 single closes of that org (3 per pool slot) held every slot of the fleet, retry after
    retry, and no close of any other org ran until the host answered again (seen: none in 200 s). The fleet's orgs
    file gives the orgs a read timeout of their own (FLEET_ORG_READ_TIMEOUT_SECONDS, 5 s, instead of the process's
    15 s), so each unanswered request costs 5 s here."""
    troubled, other = FLEET_ORGS
    by_org = clients(producer_settings)
    for org in (troubled, other):  # tokens and limiters warm: the trouble is the API host's alone
        assert by_org[org].close(on_fleet.org_admin(org).create(1)[0], wait=True, timeout=60).outcome \
            is Outcome.CLOSED  # type: ignore[union-attr]
    # beyond the org's read timeout: no request is answered
    on_fleet.org_admin(troubled).faults(latency_ms=int(FLEET_ORG_READ_TIMEOUT_SECONDS * 1000) + 1000)
    stuck_ids = on_fleet.org_admin(troubled).create(24)
    stuck = [by_org[troubled].close(cid) for cid in stuck_ids]
    try:
        for cid in on_fleet.org_admin(other).create(3):  # the other org keeps closing meanwhile: singles and a bulk
            assert by_org[other].close(cid, wait=True, timeout=90).outcome is Outcome.CLOSED  # type: ignore[union-attr]
        batch = by_org[other].close_many(on_fleet.org_admin(other).create(30))
        assert batch.wait(timeout=120).counts == {"closed": 30}
        bucket = client_digest(org_client(troubled)[0])
        assert int(redis_client.get(keys_for(troubled).rate_limit(bucket, "timeouts")) or 0) >= 3  # still unanswered
    finally:
        on_fleet.org_admin(troubled).faults(latency_ms=0)
    outcomes = {by_org[troubled].result(str(task), timeout=240).outcome for task in stuck}  # nothing lost
    assert outcomes == {Outcome.CLOSED}
    assert all(not on_fleet.org_admin(troubled).conversation(cid)["open"] for cid in stuck_ids)
