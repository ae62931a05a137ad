"""Credentials scoped to orgs, through the shared fleet (orgs ``default``, ``org-a``, ``org-b``): an intake token
acts only for the orgs it is granted, the CLI and the Python API for the org they are given. Every cross-org
access is tried: close, read an outcome, read a batch, its results (the export), cancel, retry and sweep. Another
org's things are answered exactly as things that do not exist."""

from __future__ import annotations

import json
import secrets
from collections.abc import Iterator

import pytest
import requests
from typer.testing import CliRunner

from genesys_closer.config.settings import ProducerSettings
from genesys_closer.producer import cli as cli_module
from genesys_closer.producer.api import CloseClient
from genesys_closer.shared.outcomes import Outcome
from tests.conftest import Fleet
from tests.fleet.conftest import cli
from tests.fleet.intake_server import Intake, running_intake
from tests.waiting import wait_until

TOKEN_DEFAULT, TOKEN_A, TOKEN_B, TOKEN_AB = (secrets.token_hex(16) for _ in range(4))
GRANTS = f"{TOKEN_DEFAULT}:default;{TOKEN_A}:org-a;{TOKEN_B}:org-b;{TOKEN_AB}:org-a,org-b"
NOBODY = "00000000-0000-4000-8000-00000000abcd"  # a conversation nobody closed
NO_BATCH = "0" * 32


@pytest.fixture(scope="module")
def intake(fleet: Fleet, tmp_path_factory: pytest.TempPathFactory) -> Iterator[Intake]:
    log = tmp_path_factory.mktemp("intake-grants") / "intake.log"
    with running_intake(fleet.redis_url, log, INTAKE_TOKENS=GRANTS) as server:
        yield server


def answer(response: requests.Response) -> tuple[int, str, str]:
    """What a caller learns from an error: status, code and message (the request id differs every time)."""
    error = response.json()["error"]
    return response.status_code, error["code"], error["message"]


def test_a_token_closes_and_reads_only_in_its_orgs(intake: Intake, on_fleet: Fleet) -> None:
    [a_conversation] = on_fleet.org_admin("org-a").create(1)
    accepted = intake.call("POST", "/v1/closes", TOKEN_A, json={"conversationId": a_conversation})  # its only org
    assert accepted.status_code == 202 and accepted.json()["org"] == "org-a"
    status_url = accepted.json()["statusUrl"]
    assert status_url == f"/v1/conversations/{a_conversation}?org=org-a"
    wait_until(lambda: intake.call("GET", status_url, TOKEN_A).status_code == 200, timeout=60)
    assert intake.call("GET", status_url, TOKEN_A).json()["outcome"] == "closed"
    assert on_fleet.org_admin("org-a").conversation(a_conversation)["open"] is False
    batch = intake.call("POST", "/v1/batches", TOKEN_A, json={"conversationIds": on_fleet.org_admin("org-a").create(5)})
    assert batch.status_code == 202 and batch.json()["org"] == "org-a"
    batch_id = batch.json()["batchId"]
    wait_until(lambda: intake.call("GET", batch.json()["statusUrl"], TOKEN_A).json()["finished_at"], timeout=60)

    # Every other token: org-a's conversation and batch are exactly like ones that do not exist.
    for token, org in ((TOKEN_B, None), (TOKEN_B, "org-a"), (TOKEN_DEFAULT, None), (TOKEN_DEFAULT, "org-a")):
        params = {} if org is None else {"org": org}
        own_missing = intake.call("GET", f"/v1/conversations/{NOBODY}", token)
        assert answer(intake.call("GET", f"/v1/conversations/{a_conversation}", token, params=params)) \
            == answer(own_missing)
        no_batch = answer(intake.call("GET", f"/v1/batches/{NO_BATCH}", token))
        for method, path in (("GET", ""), ("GET", "/results"), ("POST", "/cancel")):
            assert answer(intake.call(method, f"/v1/batches/{batch_id}{path}", token, params=params)) == no_batch
            assert answer(intake.call(method, f"/v1/batches/{NO_BATCH}{path}", token, params=params)) == no_batch
    # Closing in an org not granted is refused before anything is enqueued, as for an org that does not exist.
    [untouched] = on_fleet.org_admin("org-a").create(1)
    refused = intake.call("POST", "/v1/closes", TOKEN_B, json={"conversationId": untouched, "org": "org-a"})
    assert answer(refused) == answer(intake.call("POST", "/v1/closes", TOKEN_B,
                                                 json={"conversationId": untouched, "org": "no-such-org"}))
    assert refused.status_code == 404
    assert intake.call("POST", "/v1/batches", TOKEN_B, params={"org": "org-a"},
                       json={"conversationIds": [untouched]}).status_code == 404
    assert intake.call("POST", "/v1/batches", TOKEN_B, headers={"Content-Type": "text/plain"},
                       params={"org": "org-a"}, data=untouched).status_code == 404
    assert not [r for r in on_fleet.org_admin("org-a").requests() if r.get("conversation_id") == untouched]
    # The cancel tried by the others changed nothing: org-a's batch finished as it would have.
    assert json.loads(intake.call("GET", f"/v1/batches/{batch_id}", TOKEN_A).text)["counts"] == {"closed": 5}
    assert intake.call("GET", f"/v1/batches/{batch_id}", TOKEN_AB, params={"org": "org-a"}).status_code == 200


def test_a_token_of_several_orgs_names_one(intake: Intake, on_fleet: Fleet) -> None:
    [b_conversation] = on_fleet.org_admin("org-b").create(1)
    unnamed = intake.call("POST", "/v1/closes", TOKEN_AB, json={"conversationId": b_conversation})
    assert answer(unnamed)[:2] == (422, "org_required")
    named = intake.call("POST", "/v1/closes", TOKEN_AB, params={"wait": 20},
                        json={"conversationId": b_conversation, "org": "org-b"})
    assert named.status_code == 200 and named.json()["outcome"] == "closed" and named.json()["org"] == "org-b"
    assert intake.call("GET", f"/v1/conversations/{b_conversation}", TOKEN_B).json()["org"] == "org-b"
    assert intake.call("POST", "/v1/closes", TOKEN_AB, json={"conversationId": b_conversation,
                                                             "org": "Org B!"}).status_code == 404


def test_the_cli_and_the_python_api_act_for_the_org_given(on_fleet: Fleet, redis_url: str,
                                                           producer_settings: ProducerSettings) -> None:
    admin_a = on_fleet.org_admin("org-a")
    ids = admin_a.create(4)
    started = cli(redis_url, "--org", "org-a", "--json", "bulk", "-", stdin="\n".join(ids) + "\n")
    assert started.returncode == 0, started.stderr
    batch_id = next(json.loads(line)["batch_id"] for line in started.stdout.splitlines() if "batch_id" in line)
    a_client = CloseClient(producer_settings, org="org-a")
    assert a_client.batch(batch_id).wait(timeout=60).counts == {"closed": 4}
    for org in ("default", "org-b"):  # every read and write of another org: as for a batch that does not exist
        for command in (["status", batch_id], ["results", batch_id], ["cancel", batch_id],
                        ["retry", batch_id, "--outcome", "closed"]):
            theirs = cli(redis_url, "--org", org, *command)
            missing = cli(redis_url, "--org", org, *[NO_BATCH if part == batch_id else part for part in command])
            assert (theirs.returncode, theirs.stderr.replace(batch_id, NO_BATCH)) == \
                (missing.returncode, missing.stderr), (org, command)
            assert theirs.returncode == 2
        assert cli(redis_url, "--org", org, "outcome", ids[0]).stdout == \
            cli(redis_url, "--org", org, "outcome", NOBODY).stdout.replace(NOBODY, ids[0])
        other = CloseClient(producer_settings, org=org)
        assert other.outcome(ids[0]) is None
        assert batch_id not in {s.batch_id for s in other.batches()}
    assert a_client.batch(batch_id).status().counts == {"closed": 4}  # nobody else's cancel or retry touched it
    # A sweep looks only at its own org's Genesys, and ORG from the environment names the org as --org does.
    open_b = on_fleet.org_admin("org-b").create(3, age_minutes=300)
    on_fleet.org_admin("default").create(2, age_minutes=300)
    run = CliRunner().invoke(cli_module.app, ["--redis-url", redis_url, "--json", "sweep", "--min-age-minutes", "60",
                                              "--dry-run"], env={"ORG": "org-b"})
    assert run.exit_code == 0, run.output
    events = [json.loads(line) for line in run.stdout.splitlines()]
    assert {e["conversation_id"] for e in events if e["event"] == "candidate" and e["chosen"]} == set(open_b)
    record = CloseClient(producer_settings, org="org-b").close(open_b[0], wait=True, timeout=60)
    assert record.outcome is Outcome.CLOSED  # type: ignore[union-attr]
    assert CloseClient(producer_settings).outcome(open_b[0]) is None
