"""Several orgs in one emulator, over raw HTTP: each with its own clients, conversations, limit per token and faults;
a token sees only its own org (another org's conversation id is a 404 ``not.found``, analytics shows only its org);
the request log names each request's org; the seed file and flags declare orgs with errors naming org and field."""

from __future__ import annotations

import subprocess
import sys
import urllib.error
from collections.abc import Iterator
from datetime import UTC, datetime, timedelta
from pathlib import Path

import pytest
import requests

from genesys_closer.emulator import EmulatorConfig, EmulatorServer, start_in_thread
from genesys_closer.emulator.admin import EmulatorAdmin
from genesys_closer.emulator.org_seeds import SeedError, load_orgs_file, parse_org_flag
from genesys_closer.emulator.state import OrgSpec

MESSAGES = "/api/v2/conversations/messages/{conversationId}"
EU = OrgSpec("eu-prod", "eu-client", "eu-secret", rate_limit_per_minute=4)
US = OrgSpec("us-prod", "us-client", "us-secret")


@pytest.fixture
def emulator_config() -> EmulatorConfig:
    return EmulatorConfig(consistency_delay_ms=0, seed=8, rate_limit_per_minute=50, orgs=(EU, US))


def token(base: str, client: str, secret: str) -> str:
    reply = requests.post(f"{base}/oauth/token", auth=(client, secret), data={"grant_type": "client_credentials"},
                          timeout=5)
    assert reply.status_code == 200, reply.text
    return str(reply.json()["access_token"])


def bearer(value: str) -> dict[str, str]:
    return {"Authorization": f"Bearer {value}"}


def interval() -> str:
    now = datetime.now(tz=UTC)
    return (f"{(now - timedelta(days=1)).strftime('%Y-%m-%dT%H:%M:%S.000Z')}/"
            f"{(now + timedelta(days=1)).strftime('%Y-%m-%dT%H:%M:%S.000Z')}")


def test_a_token_sees_only_its_own_org(emulator: EmulatorServer, admin: EmulatorAdmin) -> None:
    base = emulator.base_url
    [ours] = admin.create(1, org="us-prod")
    [theirs] = admin.create(1, org="eu-prod")
    [default] = admin.create(1)
    us = bearer(token(base, "us-client", "us-secret"))
    assert requests.get(f"{base}{MESSAGES.format(conversationId=ours)}", headers=us, timeout=5).status_code == 200
    for cid in (theirs, default):
        url = f"{base}{MESSAGES.format(conversationId=cid)}"
        calls = [requests.get(url, headers=us, timeout=5),
                 requests.patch(url, json={"state": "disconnected"}, headers=us, timeout=5),
                 requests.get(f"{base}/api/v2/conversations/{cid}", headers=us, timeout=5),
                 requests.post(f"{base}/api/v2/conversations/{cid}/disconnect", headers=us, timeout=5)]
        for reply in calls:  # Genesys' own answer for an id the org does not hold
            body = reply.json()
            assert reply.status_code == 404 and body["code"] == "not.found" and body["status"] == 404
            assert set(body) == {"message", "code", "status", "messageParams", "contextId", "details", "errors"}
    assert admin.conversation(theirs, org="eu-prod")["open"] and admin.conversation(default)["open"]
    assert admin.stats()["conversation_patches"] == 0  # nothing reached another org's conversation

    rows = requests.get(f"{base}/api/v2/analytics/conversations/details",
                        params={"id": ",".join([ours, theirs, default])}, headers=us, timeout=5).json()
    assert [r["conversationId"] for r in rows["conversations"]] == [ours]
    hits = requests.post(f"{base}/api/v2/analytics/conversations/details/query",
                         json={"interval": interval(), "paging": {"pageSize": 100}}, headers=us, timeout=5).json()
    assert hits["totalHits"] == 1 and hits["conversations"][0]["conversationId"] == ours
    assert admin.orgs()["us-prod"]["conversations_total"] == 1


def test_the_same_id_in_two_orgs_is_two_conversations(emulator: EmulatorServer, admin: EmulatorAdmin) -> None:
    base = emulator.base_url
    [cid] = admin.create(1, org="eu-prod")
    assert admin.create(1, org="us-prod", ids=[cid]) == [cid]
    with pytest.raises(urllib.error.HTTPError, match="400"):
        admin.create(1, org="us-prod", ids=[cid])  # but once per org
    url = f"{base}{MESSAGES.format(conversationId=cid)}"
    us = bearer(token(base, "us-client", "us-secret"))
    assert requests.patch(url, json={"state": "disconnected"}, headers=us, timeout=5).status_code == 200
    assert not admin.conversation(cid, org="us-prod")["open"]
    assert admin.conversation(cid, org="eu-prod")["open"]
    assert admin.orgs()["us-prod"]["conversation_patches"] == 1 and admin.orgs()["eu-prod"]["conversation_patches"] == 0


def test_limits_are_per_token_and_per_org(emulator: EmulatorServer, admin: EmulatorAdmin) -> None:
    base = emulator.base_url
    [eu_cid] = admin.create(1, org="eu-prod")
    [us_cid] = admin.create(1, org="us-prod")
    eu, us = bearer(token(base, "eu-client", "eu-secret")), bearer(token(base, "us-client", "us-secret"))
    eu_url, us_url = (f"{base}{MESSAGES.format(conversationId=c)}" for c in (eu_cid, us_cid))
    for n in range(1, 5):
        reply = requests.get(eu_url, headers=eu, timeout=5)
        assert reply.status_code == 200 and reply.headers["inin-ratelimit-allowed"] == "4"
        assert reply.headers["inin-ratelimit-count"] == str(n)
    limited = requests.get(eu_url, headers=eu, timeout=5)
    assert limited.status_code == 429 and int(limited.headers["Retry-After"]) >= 1
    assert limited.json()["code"] == "too.many.requests.retry.after"
    other = requests.get(us_url, headers=us, timeout=5)  # the other org: its own window, its own limit
    assert other.status_code == 200 and other.headers["inin-ratelimit-allowed"] == "50"
    assert other.headers["inin-ratelimit-count"] == "1"
    second_eu = bearer(token(base, "eu-client", "eu-secret"))  # a second token of the same org: its own window
    assert requests.get(eu_url, headers=second_eu, timeout=5).status_code == 200
    assert admin.faults(org="us-prod", rate_limit_per_minute=7)["rate_limit_per_minute"] == 7
    assert requests.get(us_url, headers=us, timeout=5).headers["inin-ratelimit-allowed"] == "7"
    assert admin.orgs()["eu-prod"]["rate_limit_per_minute"] == 4


def test_faults_of_one_org_leave_the_others_alone(emulator: EmulatorServer, admin: EmulatorAdmin) -> None:
    base = emulator.base_url
    [eu_cid] = admin.create(1, org="eu-prod")
    [us_cid] = admin.create(1, org="us-prod")
    [default_cid] = admin.create(1)
    eu, us = bearer(token(base, "eu-client", "eu-secret")), bearer(token(base, "us-client", "us-secret"))
    default = bearer(token(base, "demo-client", "demo-secret"))
    admin.faults(org="us-prod", storm_429_seconds=60, error_rate=0.0)
    assert admin.faults(org="eu-prod", burst_429=1)["burst_429"] == 1
    urls = {name: f"{base}{MESSAGES.format(conversationId=c)}" for name, c in
            (("eu", eu_cid), ("us", us_cid), ("default", default_cid))}
    stormed = requests.get(urls["us"], headers=us, timeout=5)
    assert stormed.status_code == 429 and int(stormed.headers["Retry-After"]) > 50  # the seconds the storm has left
    admin.faults(org="us-prod", storm_429_retry_after=2)  # a storm that says "in 2 s" until it ends
    assert requests.get(urls["us"], headers=us, timeout=5).headers["Retry-After"] == "2"
    assert requests.get(urls["eu"], headers=eu, timeout=5).status_code == 429  # its one burst
    assert requests.get(urls["eu"], headers=eu, timeout=5).status_code == 200
    assert requests.get(urls["default"], headers=default, timeout=5).status_code == 200
    assert admin.revoke_tokens(org="us-prod") == 1
    assert requests.get(urls["us"], headers=us, timeout=5).json()["code"] == "bad.credentials"
    assert requests.get(urls["eu"], headers=eu, timeout=5).status_code == 200
    with pytest.raises(urllib.error.HTTPError, match="400"):
        admin.faults(org="eu-prod", drop_rate=1.0)  # the connection is the whole emulator's
    with pytest.raises(urllib.error.HTTPError, match="400"):
        admin.faults(org="nowhere", burst_429=1)
    admin.reset(faults=True)
    assert admin.faults(org="us-prod")["storm_429_seconds"] == 0
    assert admin.faults(org="us-prod")["storm_429_retry_after"] is None
    assert requests.get(urls["eu"], headers=eu, timeout=5).status_code == 200


def test_the_request_log_names_each_requests_org(emulator: EmulatorServer, admin: EmulatorAdmin) -> None:
    base = emulator.base_url
    [eu_cid] = admin.create(1, org="eu-prod")
    [us_cid] = admin.create(1, org="us-prod")
    eu, us = bearer(token(base, "eu-client", "eu-secret")), bearer(token(base, "us-client", "us-secret"))
    requests.get(f"{base}{MESSAGES.format(conversationId=eu_cid)}", headers=eu, timeout=5)
    requests.get(f"{base}{MESSAGES.format(conversationId=us_cid)}", headers=eu, timeout=5)  # a 404
    requests.get(f"{base}{MESSAGES.format(conversationId=us_cid)}", headers=us, timeout=5)
    requests.get(f"{base}{MESSAGES.format(conversationId=us_cid)}", headers=bearer("forged"), timeout=5)
    rows = [(r["route"], r["status"], r["conversation_id"], r["org"]) for r in admin.requests()]
    message = MESSAGES
    assert rows == [("/oauth/token", 200, None, "eu-prod"), ("/oauth/token", 200, None, "us-prod"),
                    (message, 200, eu_cid, "eu-prod"), (message, 404, us_cid, "eu-prod"),
                    (message, 200, us_cid, "us-prod"), (message, 401, us_cid, None)]
    orgs = admin.orgs()
    assert (orgs["eu-prod"]["requests_total"], orgs["us-prod"]["requests_total"], orgs["default"]["requests_total"]) \
        == (3, 2, 0)
    assert admin.stats()["requests_total"] == 6


def test_orgs_added_at_run_time_and_clients_of_one_org(emulator: EmulatorServer, admin: EmulatorAdmin) -> None:
    base = emulator.base_url
    admin.add_org("dev", "dev-client", "dev-secret", rate_limit_per_minute=9)
    admin.add_client("dev-second", "pw", org="dev")
    [cid] = admin.create(1, org="dev")
    reply = requests.get(f"{base}{MESSAGES.format(conversationId=cid)}",
                         headers=bearer(token(base, "dev-second", "pw")), timeout=5)
    assert reply.status_code == 200 and reply.headers["inin-ratelimit-allowed"] == "9"
    for bad in ({"name": "dev", "client_id": "x", "client_secret": "y"},  # exists
                {"name": "other", "client_id": "eu-client", "client_secret": "y"},  # another org's client
                {"name": "Not An Org", "client_id": "z", "client_secret": "y"}):
        with pytest.raises(urllib.error.HTTPError, match="400"):
            admin.add_org(bad["name"], bad["client_id"], bad["client_secret"])
    with pytest.raises(urllib.error.HTTPError, match="400"):
        admin.add_client("eu-client", "new", org="dev")  # a client belongs to one org


def test_config_refuses_a_client_or_name_given_twice() -> None:
    with pytest.raises(ValueError, match="client id 'demo-client' is given twice"):
        EmulatorConfig(orgs=(OrgSpec("a", "demo-client", "x"),))
    with pytest.raises(ValueError, match="org name 'a' is given twice"):
        EmulatorConfig(orgs=(OrgSpec("a", "c1", "x"), OrgSpec("a", "c2", "x")))
    with pytest.raises(ValueError, match="must match"):
        OrgSpec("Prod", "c", "x")


SEED_FILE = """
[orgs.eu-prod]
client_id = "eu-client"
client_secret_env = "EU_SECRET"
rate_limit_per_minute = 120
conversations = 3
mix = { sms = 1, queued = 2 }

[orgs.us-prod]
client_id = "us-client"
client_secret = "us-secret"
"""


def test_seed_file_and_flag_forms(tmp_path: Path) -> None:
    path = tmp_path / "orgs.toml"
    path.write_text(SEED_FILE)
    eu, us = load_orgs_file(path, {"EU_SECRET": "from-env"})
    assert (eu.spec, eu.conversations) == (OrgSpec("eu-prod", "eu-client", "from-env", 120),
                                           {"webmessaging": 3, "sms": 1, "queued": 2})
    assert us.spec == OrgSpec("us-prod", "us-client", "us-secret") and us.conversations == {}
    assert parse_org_flag("dev:dev-client:dev-secret:60").spec == OrgSpec("dev", "dev-client", "dev-secret", 60)
    cases = {
        SEED_FILE: "org eu-prod: client_secret_env names 'EU_SECRET', which is not set",
        '[orgs.a]\nclient_id = "c"\n': "org a: client_secret is required",
        '[orgs.a]\nclient_id = "c"\nclient_secret = "s"\ncolour = 1\n': "org a: unknown field 'colour'",
        '[orgs.a]\nclient_id = "c"\nclient_secret = "s"\nmix = { fax = 1 }\n': "org a: mix",
        '[orgs.a]\nclient_id = "c"\nclient_secret = "s"\nrate_limit_per_minute = 0\n': "org a: rate_limit_per_minute",
        '[orgs.default]\nclient_id = "c"\nclient_secret = "s"\n': "org default: the default org is the emulator's",
        '[orgs.A]\nclient_id = "c"\nclient_secret = "s"\n': "org name 'A' must match",
        'orgs = 1\n': "expected only [orgs.NAME] tables",
        '[orgs.a\n': "orgs file",
    }
    for text, message in cases.items():
        path.write_text(text)
        with pytest.raises(SeedError, match=message.replace("[", r"\[").replace("(", r"\(")):
            load_orgs_file(path, {})
    for flag in ("dev:dev-client", "dev:c:s:fast", "Dev:c:s"):
        with pytest.raises(SeedError):
            parse_org_flag(flag)


@pytest.fixture
def emulator_process(tmp_path: Path) -> Iterator[str]:
    path = tmp_path / "orgs.toml"
    path.write_text(SEED_FILE.replace('client_secret_env = "EU_SECRET"', 'client_secret = "eu-secret"'))
    process = subprocess.Popen([sys.executable, "-m", "genesys_closer.emulator", "--port", "0", "--conversations", "2",
                                "--orgs-file", str(path), "--org", "dev:dev-client:dev-secret:30"],
                               stdout=subprocess.PIPE, stderr=subprocess.DEVNULL, text=True)
    try:
        assert process.stdout is not None
        base = process.stdout.readline().strip()
        assert base.startswith("http://127.0.0.1:")
        EmulatorAdmin(base).wait_ready()
        yield base
    finally:
        process.terminate()
        process.wait(timeout=10)


def test_command_line_declares_and_seeds_orgs(emulator_process: str) -> None:
    admin = EmulatorAdmin(emulator_process)
    orgs = admin.orgs()
    assert {name: view["conversations_total"] for name, view in orgs.items()} == {
        "default": 2, "eu-prod": 6, "us-prod": 0, "dev": 0}
    assert (orgs["eu-prod"]["rate_limit_per_minute"], orgs["dev"]["rate_limit_per_minute"],
            orgs["us-prod"]["rate_limit_per_minute"]) == (120, 30, 300)
    assert orgs["default"]["clients"] == ["demo-client"] and orgs["dev"]["clients"] == ["dev-client"]
    [cid] = [c["id"] for c in admin.conversations(org="eu-prod", kind="sms")]
    url = f"{emulator_process}{MESSAGES.format(conversationId=cid)}"
    assert requests.get(url, headers=bearer(token(emulator_process, "eu-client", "eu-secret")),
                        timeout=5).status_code == 200
    assert requests.get(url, headers=bearer(token(emulator_process, "demo-client", "demo-secret")),
                        timeout=5).status_code == 404


def test_single_org_emulator_unchanged(tmp_path: Path) -> None:
    """No org declared: one org ``default``, the stats of before (plus ``orgs``), log rows name ``default``."""
    emulator = start_in_thread(config=EmulatorConfig(seed=1))
    try:
        admin = EmulatorAdmin(emulator.base_url)
        [cid] = admin.create(1)
        reply = requests.get(f"{emulator.base_url}{MESSAGES.format(conversationId=cid)}",
                             headers=bearer(token(emulator.base_url, "demo-client", "demo-secret")), timeout=5)
        assert reply.headers["inin-ratelimit-allowed"] == "300"
        assert list(admin.orgs()) == ["default"]
        assert {r["org"] for r in admin.requests()} == {"default"}
        assert admin.stats()["conversations_open"] == 1 and admin.conversation(cid)["org"] == "default"
    finally:
        emulator.stop()


def test_a_storm_can_wait_for_a_number_of_patches(emulator: EmulatorServer, admin: EmulatorAdmin) -> None:
    base = emulator.base_url
    first, second, third = admin.create(3)
    auth = bearer(token(base, "demo-client", "demo-secret"))
    admin.faults(storm_429_seconds=60, storm_429_after_patches=2)
    url = f"{base}{MESSAGES}"
    body = {"state": "disconnected"}
    assert requests.get(url.format(conversationId=first), headers=auth, timeout=5).status_code == 200  # not a PATCH
    assert requests.patch(url.format(conversationId=first), json=body, headers=auth, timeout=5).status_code == 200
    assert requests.patch(url.format(conversationId=second), json=body, headers=auth, timeout=5).status_code == 200
    stormed = requests.patch(url.format(conversationId=third), json=body, headers=auth, timeout=5)
    assert stormed.status_code == 429 and int(stormed.headers["Retry-After"]) > 50  # begun at the second PATCH
