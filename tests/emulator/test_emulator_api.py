"""The emulator's own behaviour over raw HTTP: headers, limits, errors, tokens, analytics paging, faults, stats."""

from __future__ import annotations

import subprocess
import sys
import time
from datetime import UTC, datetime, timedelta

import pytest
import requests

from genesys_closer.emulator import EmulatorConfig, EmulatorServer, start_in_thread
from genesys_closer.emulator.admin import EmulatorAdmin
from tests.clock import SteppedClock

MESSAGES = "/api/v2/conversations/messages/{conversationId}"


@pytest.fixture
def emulator_config() -> EmulatorConfig:
    return EmulatorConfig(consistency_delay_ms=200, seed=5, rate_limit_per_minute=20, token_ttl_seconds=2)


def token(base: str, client: str = "demo-client", secret: str = "demo-secret") -> str:
    reply = requests.post(f"{base}/oauth/token", auth=(client, secret), data={"grant_type": "client_credentials"},
                          timeout=5)
    assert reply.status_code == 200, reply.text
    body = reply.json()
    assert body["token_type"] == "bearer" and body["expires_in"] == 2
    return str(body["access_token"])


def get(base: str, path: str, bearer: str) -> requests.Response:
    return requests.get(f"{base}{path}", headers={"Authorization": f"Bearer {bearer}"}, timeout=5)


def test_oauth_errors(emulator: EmulatorServer) -> None:
    base = emulator.base_url
    bad = requests.post(f"{base}/oauth/token", auth=("demo-client", "nope"), data={"grant_type": "client_credentials"})
    assert bad.status_code == 401
    assert bad.json() == {"error": "invalid_client", "description": "authentication failed",
                          "error_description": "authentication failed"}
    unknown = requests.post(f"{base}/oauth/token", auth=("ghost", "x"), data={"grant_type": "client_credentials"})
    assert unknown.json()["description"] == "client not found"
    grant = requests.post(f"{base}/oauth/token", auth=("demo-client", "demo-secret"), data={"grant_type": "password"})
    assert grant.status_code == 400 and grant.json()["error"] == "unsupported_grant_type"


def test_rate_limit_headers_and_429(emulator: EmulatorServer, admin: EmulatorAdmin) -> None:
    [cid] = admin.create(1)
    bearer = token(emulator.base_url)
    path = MESSAGES.format(conversationId=cid)
    for n in range(1, 21):
        reply = get(emulator.base_url, path, bearer)
        assert reply.status_code == 200
        assert reply.headers["inin-ratelimit-allowed"] == "20"
        assert reply.headers["inin-ratelimit-count"] == str(n)
        assert 0 < int(reply.headers["inin-ratelimit-reset"]) <= 60
        assert reply.headers["ININ-Correlation-Id"]
    limited = get(emulator.base_url, path, bearer)
    assert limited.status_code == 429
    assert 0 < int(limited.headers["Retry-After"]) <= 60
    body = limited.json()
    assert body["code"] == "too.many.requests.retry.after" and body["status"] == 429
    assert set(body) >= {"message", "code", "status", "messageParams", "contextId", "details", "errors"}
    assert limited.headers["ININ-Correlation-Id"] == body["contextId"]


def test_tokens_expire_and_can_be_revoked(emulator_config: EmulatorConfig) -> None:
    clock = SteppedClock()
    emulator = start_in_thread(config=emulator_config, clock=clock)
    try:
        tokens_expire_and_can_be_revoked(emulator, EmulatorAdmin(emulator.base_url), clock)
    finally:
        emulator.stop()


def tokens_expire_and_can_be_revoked(emulator: EmulatorServer, admin: EmulatorAdmin, clock: SteppedClock) -> None:
    [cid] = admin.create(1)
    path = MESSAGES.format(conversationId=cid)
    bearer = token(emulator.base_url)
    assert get(emulator.base_url, path, bearer).status_code == 200
    assert admin.revoke_tokens() == 1
    revoked = get(emulator.base_url, path, bearer)
    assert revoked.status_code == 401 and revoked.json()["code"] == "bad.credentials"
    bearer = token(emulator.base_url)  # lives token_ttl_seconds (2 s)
    clock.advance(1.9)
    assert get(emulator.base_url, path, bearer).status_code == 200
    clock.advance(0.1)
    expired = get(emulator.base_url, path, bearer)
    assert expired.status_code == 401 and expired.json()["code"] == "credentials.expired"
    missing = requests.get(f"{emulator.base_url}{path}", timeout=5)
    assert missing.status_code == 401 and missing.json()["code"] == "authentication.required"


def test_patch_body_validation_and_conflict(emulator: EmulatorServer, admin: EmulatorAdmin) -> None:
    [cid] = admin.create(1)
    url = f"{emulator.base_url}{MESSAGES.format(conversationId=cid)}"
    headers = {"Authorization": f"Bearer {token(emulator.base_url)}"}
    closed = requests.patch(url, json={"state": "closed"}, headers=headers)  # the tutorial's body
    assert closed.status_code == 400 and closed.json()["code"] == "invalid.value"
    assert requests.patch(url, data="{nope", headers=headers).status_code == 400
    assert requests.patch(url, json={"state": "disconnected"}, headers=headers).status_code == 200
    again = requests.patch(url, json={"state": "disconnected"}, headers=headers)
    assert again.status_code == 409
    webchat = requests.patch(f"{emulator.base_url}/api/v2/conversations/webchat/{cid}", json={"state": "closed"},
                             headers=headers)
    assert webchat.status_code == 404  # the tutorial's endpoint does not exist


def test_stats_count_api_not_admin(emulator: EmulatorServer, admin: EmulatorAdmin) -> None:
    [cid] = admin.create(1)
    bearer = token(emulator.base_url)
    get(emulator.base_url, MESSAGES.format(conversationId=cid), bearer)
    get(emulator.base_url, MESSAGES.format(conversationId="00000000-0000-4000-8000-000000000000"), bearer)
    admin.stats()
    admin.conversations()
    stats = admin.stats()
    assert stats["requests_total"] == 3
    assert stats["token_requests"] == 1
    assert stats["responses_by_status"] == {"200": 2, "404": 1}
    assert stats["requests_by_route"][f"GET {MESSAGES}"] == 2
    assert stats["requests_by_route"]["POST /oauth/token"] == 1
    assert stats["conversations_open"] == 1 and stats["conversations_closed"] == 0
    log = admin.requests()
    assert [r["status"] for r in log] == [200, 200, 404]
    assert all("token" not in str(r).lower() or r["route"] == "/oauth/token" for r in log)


def test_faults_drop_errors_and_latency(emulator: EmulatorServer, admin: EmulatorAdmin) -> None:
    [cid] = admin.create(1)
    bearer = token(emulator.base_url)
    path = MESSAGES.format(conversationId=cid)
    admin.faults(drop_rate=1.0)
    with pytest.raises(requests.ConnectionError):
        get(emulator.base_url, path, bearer)
    admin.faults(drop_rate=0.0, error_rate=1.0)
    assert get(emulator.base_url, path, bearer).status_code in {500, 502, 503, 504}
    admin.faults(error_rate=0.0, latency_ms=150)
    started = time.monotonic()
    assert get(emulator.base_url, path, bearer).status_code == 200
    assert time.monotonic() - started >= 0.15
    assert admin.stats()["connections_dropped"] == 1


def _interval(days_back: int, days_forward: int = 1) -> str:
    now = datetime.now(tz=UTC)
    start = (now - timedelta(days=days_back)).strftime("%Y-%m-%dT%H:%M:%S.000Z")
    end = (now + timedelta(days=days_forward)).strftime("%Y-%m-%dT%H:%M:%S.000Z")
    return f"{start}/{end}"


def test_analytics_paging_filters_and_limits(emulator: EmulatorServer, admin: EmulatorAdmin) -> None:
    queue = "11111111-2222-4333-8444-555555555555"
    web = admin.create(7, "webmessaging", queue_id=queue)
    admin.create(3, "webmessaging")
    admin.create(2, "sms", queue_id=queue)
    admin.create(2, "disconnected", queue_id=queue)
    headers = {"Authorization": f"Bearer {token(emulator.base_url)}"}
    url = f"{emulator.base_url}/api/v2/analytics/conversations/details/query"
    seen: list[str] = []
    for page in (1, 2, 3):
        body = {
            "interval": _interval(1), "order": "asc", "orderBy": "conversationStart",
            "conversationFilters": [{"type": "and", "predicates": [
                {"type": "dimension", "dimension": "conversationEnd", "operator": "notExists"}]}],
            "segmentFilters": [{"type": "and", "predicates": [
                {"type": "dimension", "dimension": "mediaType", "value": "message"},
                {"type": "dimension", "dimension": "messageType", "value": "webmessaging"},
                {"type": "dimension", "dimension": "queueId", "value": queue}]}],
            "paging": {"pageSize": 3, "pageNumber": page},
        }
        reply = requests.post(url, json=body, headers=headers, timeout=5).json()
        assert reply["totalHits"] == 7
        seen += [c["conversationId"] for c in reply.get("conversations", [])]
    assert sorted(seen) == sorted(web)
    too_long = requests.post(url, json={"interval": _interval(40)}, headers=headers)
    assert too_long.status_code == 400 and too_long.json()["code"] == "bad.request"
    too_big = requests.post(url, json={"interval": _interval(1), "paging": {"pageSize": 500}}, headers=headers)
    assert too_big.status_code == 400
    empty = requests.post(url, json={"interval": "2020-01-01T00:00:00Z/2020-01-02T00:00:00Z"}, headers=headers)
    assert empty.json() == {"totalHits": 0}


def test_cli_prints_base_url_first(tmp_path: object) -> None:
    process = subprocess.Popen([sys.executable, "-m", "genesys_closer.emulator", "--port", "0", "--conversations", "5",
                                "--mix", "sms=2,queued=1"], stdout=subprocess.PIPE, text=True)
    try:
        assert process.stdout is not None
        base = process.stdout.readline().strip()
        assert base.startswith("http://127.0.0.1:")
        admin = EmulatorAdmin(base)
        admin.wait_ready()
        kinds = sorted(c["kind"] for c in admin.conversations())
        assert kinds == ["queued", "sms", "sms"] + ["webmessaging"] * 5
    finally:
        process.terminate()
        process.wait(timeout=10)
