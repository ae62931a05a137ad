"""The HTTP intake through a real `genesys-closer serve` (uvicorn) on a loopback port, a real HTTP client, and the
shared fleet of real workers, Redis and the emulator."""

from __future__ import annotations

import csv
import io
import json
from collections.abc import Iterator
from concurrent.futures import ThreadPoolExecutor

import pytest
import redis
import requests

from genesys_closer.config.redis_keys import KEYS
from genesys_closer.emulator.admin import EmulatorAdmin
from genesys_closer.producer.intake import RESULT_LINES_PER_CHUNK
from tests.conftest import Fleet
from tests.fleet.intake_server import BASIC, TOKEN_A, TOKEN_B, Intake, running_intake
from tests.waiting import wait_until

# The batch's size: beyond one in-flight window (BATCH_IN_FLIGHT 300: refills run) and one streamed chunk of results
# (more than one read of the items: the chunks of the response join up right).
COUNT = RESULT_LINES_PER_CHUNK + 20


@pytest.fixture(scope="module")
def intake(fleet: Fleet, tmp_path_factory: pytest.TempPathFactory) -> Iterator[Intake]:
    """Two intake processes (``serve --workers 2``): the rate limit and everything else must hold across them."""
    log = tmp_path_factory.mktemp("intake") / "intake.log"
    with running_intake(fleet.redis_url, log, workers=2, INTAKE_MAX_BODY_BYTES=200000,
                        INTAKE_RATE_LIMIT_PER_MINUTE=600) as server:
        yield server


def test_single_close_with_and_without_wait(intake: Intake, admin: EmulatorAdmin) -> None:
    first, second = admin.create(2)
    accepted = intake.call("POST", "/v1/closes", json={"conversationId": first, "label": "crm case 42"})
    assert accepted.status_code == 202 and accepted.headers["X-Request-Id"]
    body = accepted.json()
    assert body["conversationId"] == first and body["statusUrl"] == f"/v1/conversations/{first}"
    wait_until(lambda: intake.call("GET", body["statusUrl"]).status_code == 200, timeout=30)
    seen = intake.call("GET", body["statusUrl"]).json()
    assert seen.get("outcome") == "closed", seen
    waited = intake.call("POST", "/v1/closes", params={"wait": 20}, json={"conversationId": second})
    assert waited.status_code == 200 and waited.json()["outcome"] == "closed" and waited.json()["api_calls"] == 3
    assert intake.call("GET", f"/v1/conversations/{admin.create(1)[0]}").status_code == 404  # nothing recorded yet


def test_batch_with_progress_and_results(intake: Intake, admin: EmulatorAdmin) -> None:
    """A batch through HTTP: its progress only grows, every item has its result line and CSV row, each closed."""
    ids = admin.create(COUNT)
    accepted = intake.call("POST", "/v1/batches", json={"conversationIds": ids, "label": "from http"})
    assert accepted.status_code == 202, accepted.text
    batch = accepted.json()
    assert batch["total"] == COUNT and batch["invalid"] == 0
    seen: list[int] = []

    def finished() -> bool:
        status = intake.call("GET", batch["statusUrl"]).json()
        seen.append(status["done"])
        return status["finished_at"] is not None

    wait_until(finished, timeout=180, interval=0.5)
    assert seen == sorted(seen) and seen[-1] == COUNT
    lines = intake.call("GET", batch["resultsUrl"]).text.splitlines()
    assert len(lines) == COUNT and {json.loads(line)["outcome"] for line in lines} == {"closed"}
    table = intake.call("GET", batch["resultsUrl"], headers={"Accept": "text/csv"})
    assert table.headers["content-type"].startswith("text/csv")
    assert len(list(csv.DictReader(io.StringIO(table.text)))) == COUNT
    assert intake.call("POST", f"/v1/batches/{batch['batchId']}/cancel").json()["state"] == "finished"


def test_text_and_csv_uploads_keep_valid_items(intake: Intake, admin: EmulatorAdmin) -> None:
    good = admin.create(5)
    plain = intake.call("POST", "/v1/batches", data="\n".join([good[0], "../etc/passwd", good[1]]),
                        headers={"Content-Type": "text/plain"})
    assert plain.status_code == 202 and plain.json()["total"] == 3 and plain.json()["invalid"] == 1
    assert "invalid conversation id" in plain.json()["invalidSamples"][0]
    table = intake.call("POST", "/v1/batches", data=f"conversationId,name\n{good[2]},x\n",
                        headers={"Content-Type": "text/csv"})
    assert table.status_code == 202 and table.json()["total"] == 1
    named = intake.call("POST", "/v1/batches?column=Conversation%20ID&label=named",  # a column as an export names it
                        data=f"Conversation ID,queue\n{good[3]},q\n", headers={"Content-Type": "text/csv"})
    assert named.status_code == 202 and named.json()["total"] == 1
    lines = intake.call("POST", "/v1/batches?column=id", data=f'{{"id": "{good[4]}"}}\n{{"id": 5}}\n',
                        headers={"Content-Type": "application/x-ndjson"})
    assert lines.status_code == 202 and lines.json()["total"] == 2 and lines.json()["invalid"] == 1
    checked = intake.call("POST", "/v1/batches/dry-run?column=key", data=f'{{"key": "{good[0]}"}}\n"nope"\n',
                          headers={"Content-Type": "application/x-ndjson"})
    assert checked.status_code == 200 and checked.json()["valid"] == 1 and checked.json()["problems"][0]["line"] == 2
    wrong = intake.call("POST", "/v1/batches?column=missing", data=f"conversationId\n{good[0]}\n",
                        headers={"Content-Type": "text/csv"})
    assert wrong.status_code == 422 and "missing" in wrong.json()["error"]["message"]
    for started in (plain, table, named, lines):  # leave no work behind on the shared fleet
        wait_until(lambda s=started: intake.call("GET", s.json()["statusUrl"]).json()["finished_at"], timeout=60)
    assert {admin.conversation(c)["open"] for c in good} == {False}


def test_bad_input_never_reaches_genesys(intake: Intake, admin: EmulatorAdmin) -> None:
    before = admin.stats()["requests_total"]
    bad = intake.call("POST", "/v1/closes", json={"conversationId": "../../api/v2/users/me"})
    assert bad.status_code == 422 and bad.json()["error"]["code"] == "invalid_conversation_id"
    assert bad.json()["error"]["details"] == ["../../api/v2/users/me"] and bad.json()["error"]["requestId"]
    unknown = intake.call("POST", "/v1/closes", json={"conversationId": admin.create(1)[0], "policy": "teardown"})
    assert unknown.status_code == 422 and unknown.json()["error"]["code"] == "invalid_request"
    huge = intake.call("POST", "/v1/batches", data="x" * 300_000, headers={"Content-Type": "text/plain"})
    assert huge.status_code == 413 and huge.json()["error"]["code"] == "body_too_large"
    not_json = intake.call("POST", "/v1/closes", data="{", headers={"Content-Type": "application/json"})
    assert not_json.status_code == 422
    empty = intake.call("POST", "/v1/batches", json={"conversationIds": []})
    assert empty.status_code == 422
    headless = intake.call("POST", "/v1/batches", data="name,queue\nx,y\n", headers={"Content-Type": "text/csv"})
    assert headless.status_code == 422 and headless.json()["error"]["code"] == "invalid_body"
    said = headless.json()["error"]["message"]  # names what an HTTP caller can do, not the CLI's flag
    assert "conversationId" in said and "--column" not in said
    assert intake.call("GET", "/v1/batches/not-a-batch").status_code == 404
    assert admin.stats()["requests_total"] == before  # not one Genesys request for any of it


def test_auth_rotation_and_no_hint(intake: Intake) -> None:
    anonymous = intake.call("GET", "/v1/batches/" + "a" * 32, token=None)
    wrong = intake.call("GET", "/v1/batches/" + "a" * 32, token="x" * 32)
    assert anonymous.status_code == wrong.status_code == 401
    assert anonymous.json()["error"]["message"] == wrong.json()["error"]["message"] == "authentication required"
    assert intake.call("GET", "/v1/batches/" + "a" * 32, token=TOKEN_B).status_code == 404  # the rotated-in token
    basic = requests.get(f"{intake.url}/v1/batches/{'a' * 32}", auth=BASIC, timeout=10)
    assert basic.status_code == 404
    assert requests.get(f"{intake.url}/healthz", timeout=10).json() == {"status": "ok"}  # no auth, no detail
    ready = requests.get(f"{intake.url}/readyz", timeout=10)
    assert ready.status_code == 200 and ready.json()["workers"] >= 1
    assert "/v1/closes" in requests.get(f"{intake.url}/openapi.json", timeout=10).json()["paths"]
    assert intake.call("GET", "/metrics", token=None).status_code == 401
    metrics = intake.call("GET", "/metrics").text
    assert 'genesys_closer_intake_requests_total{route="/v1/batches/{batch_id}",status="404"}' in metrics
    assert 'status="401"' in metrics


def test_per_credential_rate_limit(intake: Intake, fleet: Fleet) -> None:
    """600 requests/min per credential: a burst waits up to a second for its slots, beyond that 429 with
    Retry-After; the limit is per credential, so the other token is not slowed."""
    with ThreadPoolExecutor(30) as pool:
        answers = list(pool.map(lambda _: intake.call("GET", "/v1/batches/" + "b" * 32, token=TOKEN_B), range(30)))
    limited = [r for r in answers if r.status_code == 429]
    assert limited and {r.status_code for r in answers} == {404, 429}
    assert int(limited[0].headers["Retry-After"]) >= 1 and limited[0].json()["error"]["code"] == "rate_limited"
    assert intake.call("GET", "/v1/batches/" + "b" * 32).status_code == 404  # TOKEN_A
    # Not slowed, shown without timing it: each credential has its own bucket (its next-slot key lives a second
    # past its last reservation), so TOKEN_A's request never queued behind TOKEN_B's burst.
    tat = redis.Redis.from_url(fleet.redis_url).scan_iter(KEYS.rate_limit("intake-*", "tat"))
    assert len(set(tat)) == 2


def test_no_token_or_secret_in_the_logs(intake: Intake) -> None:
    intake.call("GET", "/v1/batches/" + "c" * 32)
    text = intake.log.read_text()
    assert "intake listening" in text and text.count("Started server process") == 2  # serve --workers 2
    for secret in (TOKEN_A, TOKEN_B, BASIC[1]):
        assert secret not in text
