"""The intake stays responsive: through a real `genesys-closer serve` and a real Redis.

These intakes run on a database of the session's Redis that no worker consumes (database 2), so uploads and waits
stay queued and nothing reaches the shared fleet: what is measured is the intake alone. Each test starts its own
intake (a few seconds) so that background work of one never loads the next.
"""

from __future__ import annotations

import http.client
import json
import selectors
import socket
import threading
import time
import uuid
from collections.abc import Iterator
from concurrent.futures import ThreadPoolExecutor
from pathlib import Path

import pytest
import redis
import requests

from genesys_closer.config import load_producer_settings
from genesys_closer.config.redis_keys import KEYS
from genesys_closer.shared.batches import BatchWriter
from genesys_closer.shared.celery_config import producer_app
from genesys_closer.shared.redis_connection import text
from genesys_closer.shared.stores import ResultStores
from genesys_closer.worker.recovery.broker_scan import held_closes
from genesys_closer.worker.recovery.redrive import Recovery
from tests.conftest import Fleet
from tests.fleet.intake_server import TOKEN_A, TOKEN_B, Intake, running_intake
from tests.waiting import wait_until

IDLE_DB = 2  # no worker consumes it
UPLOAD_IDS = 100_000  # the intake is stopped after the test: its background publishing costs nothing more


@pytest.fixture
def idle_redis_url(fleet: Fleet) -> str:
    url = fleet.redis_url.rsplit("/", 1)[0] + f"/{IDLE_DB}"
    redis.Redis.from_url(url).flushdb()
    return url


@pytest.fixture
def intake_log(tmp_path: Path) -> Path:
    return tmp_path / "intake.log"


@pytest.fixture
def idle_intake(idle_redis_url: str, intake_log: Path) -> Iterator[Intake]:
    with running_intake(idle_redis_url, intake_log, INTAKE_RATE_LIMIT_PER_MINUTE=1_000_000, INTAKE_MAX_WAITING=100,
                        INTAKE_HEADER_TIMEOUT_SECONDS=1, INTAKE_BODY_TIMEOUT_SECONDS=2,
                        INTAKE_MAX_BODY_BYTES=4_000_000) as server:
        yield server


def _auth(token: str = TOKEN_A) -> dict[str, str]:
    return {"Authorization": f"Bearer {token}"}


def _new_ids(count: int) -> list[str]:
    return [str(uuid.uuid4()) for _ in range(count)]


def test_a_large_upload_leaves_other_callers_answered(idle_intake: Intake) -> None:
    """While a 100,000-id upload is validated and stored, another caller's /healthz and POST /v1/closes are
    answered before the upload's 202; the batch is readable at once, and its items are published after the 202."""
    ids = _new_ids(UPLOAD_IDS)
    upload = http.client.HTTPConnection("127.0.0.1", idle_intake.port, timeout=120)
    sent, done = threading.Event(), threading.Event()
    answered: list[tuple[str, int, float]] = []

    def other_caller() -> None:
        sent.wait(60)
        with requests.Session() as session:
            while not done.is_set():
                health = session.get(f"{idle_intake.url}/healthz", timeout=30)
                answered.append(("healthz", health.status_code, time.monotonic()))
                close = session.post(f"{idle_intake.url}/v1/closes", json={"conversationId": str(uuid.uuid4())},
                                     headers=_auth(TOKEN_B), timeout=30)
                answered.append(("close", close.status_code, time.monotonic()))

    caller = threading.Thread(target=other_caller)
    caller.start()
    try:
        upload.request("POST", "/v1/batches", body="\n".join(ids).encode(),
                       headers={**_auth(), "Content-Type": "text/plain"})
        sent_at = time.monotonic()
        sent.set()
        response = upload.getresponse()
        accepted_at = time.monotonic()
        accepted = json.loads(response.read())
    finally:
        sent.set()
        done.set()
        caller.join(60)
    assert response.status == 202, accepted
    before = {(kind, status) for kind, status, at in answered if at < accepted_at}
    print(f"upload answered {accepted_at - sent_at:.2f} s after it was sent; first answers:",
          [(kind, round(at - sent_at, 3)) for kind, _, at in answered[:4]])
    assert before == {("healthz", 200), ("close", 202)}, answered[:4]
    assert accepted["total"] == UPLOAD_IDS and accepted["invalid"] == 0
    status = idle_intake.call("GET", accepted["statusUrl"])
    assert status.status_code == 200 and status.json()["total"] == UPLOAD_IDS


def _queued(client: redis.Redis, batch_id: str) -> list[str]:
    return [held.conversation_id for held in held_closes(client) if held.batch_id == batch_id]


def test_an_intake_killed_mid_enqueue_loses_no_item(idle_redis_url: str, tmp_path: Path) -> None:
    """SIGKILL the intake just after its 202, while it may still be starting the batch in the background: once its
    lease expires, the recovery check takes over a batch left ``enqueuing`` and feeds it, feeds a running one
    nobody fed, or re-sends fed items whose messages were never published, so every item is either queued once or
    waits in the batch's feed, whichever moment the kill hit (tests/worker/test_enqueue_recovery.py and
    tests/worker/test_feeder.py take each case on its own)."""
    client = redis.Redis.from_url(idle_redis_url)
    ids = _new_ids(5000)
    with running_intake(idle_redis_url, tmp_path / "intake.log", BATCH_ENQUEUE_LEASE_SECONDS=1) as intake:
        accepted = intake.call("POST", "/v1/batches", json={"conversationIds": ids})
        assert accepted.status_code == 202, accepted.text
        batch_id = accepted.json()["batchId"]
        intake.kill()
    state, total = client.hmget(KEYS.batch(batch_id), ["state", "total"])
    assert int(total or 0) == 5000  # stored before the 202
    print(f"killed with the batch {text(state or b'?')}")
    wait_until(lambda: not client.exists(KEYS.batch_enqueuer(batch_id)), timeout=10, message="lease never expired")

    settings = load_producer_settings(redis_url=idle_redis_url)
    results = ResultStores.open(client, settings.results_ttl_seconds)
    # stall_seconds=0: the kill may also land between feeding the first items and publishing them (they are in
    # flight without a message, which the stalled-batch redrive re-sends, BATCH_STALL_SECONDS later in production)
    recovery = Recovery(client, results, BatchWriter(producer_app(settings), results, time.time), stall_seconds=0)
    report = recovery.run()
    print(f"recovery: {report.as_dict()}")
    queued = _queued(client, batch_id)
    fed = settings.batch_in_flight
    assert sorted(queued) == sorted(ids[:fed])  # none twice, the first BATCH_IN_FLIGHT in input order
    assert text(client.get(KEYS.batch_feed(batch_id)) or b"")[fed * 36:] == "".join(ids[fed:])  # the rest waits
    assert results.batches.status(batch_id).state == "running"  # type: ignore[union-attr]
    assert batch_id not in results.batches.enqueuing()


def test_a_retried_upload_returns_the_same_batch(idle_intake: Intake) -> None:
    ids = _new_ids(3)
    first = idle_intake.call("POST", "/v1/batches", json={"conversationIds": ids},
                             headers={"Idempotency-Key": "upload-42"})
    assert first.status_code == 202
    again = idle_intake.call("POST", "/v1/batches", json={"conversationIds": ids},
                             headers={"Idempotency-Key": "upload-42"})
    assert again.status_code == 202 and again.json() == first.json()
    assert again.headers["Idempotent-Replayed"] == "true"
    other_body = idle_intake.call("POST", "/v1/batches", json={"conversationIds": ids[:2]},
                                  headers={"Idempotency-Key": "upload-42"})
    assert other_body.status_code == 422 and other_body.json()["error"]["code"] == "idempotency_key_reused"
    assert other_body.json()["error"]["requestId"]
    other_caller = idle_intake.call("POST", "/v1/batches", token=TOKEN_B, json={"conversationIds": ids},
                                    headers={"Idempotency-Key": "upload-42"})  # keys are per credential
    assert other_caller.status_code == 202 and other_caller.json()["batchId"] != first.json()["batchId"]
    failed = idle_intake.call("POST", "/v1/batches", json={"conversationIds": []},
                              headers={"Idempotency-Key": "upload-44"})
    assert failed.status_code == 422  # nothing was started: the key is free for the corrected upload
    corrected = idle_intake.call("POST", "/v1/batches", json={"conversationIds": ids},
                                 headers={"Idempotency-Key": "upload-44"})
    assert corrected.status_code == 202 and "Idempotent-Replayed" not in corrected.headers
    bad_key = idle_intake.call("POST", "/v1/batches", json={"conversationIds": ids},
                               headers={"Idempotency-Key": "has space"})
    assert bad_key.status_code == 422 and bad_key.json()["error"]["code"] == "invalid_idempotency_key"

    def upload(_: int) -> requests.Response:  # concurrent retries of one upload
        return idle_intake.call("POST", "/v1/batches", json={"conversationIds": ids},
                                headers={"Idempotency-Key": "upload-43"})

    with ThreadPoolExecutor(8) as pool:
        answers = list(pool.map(upload, range(8)))
    assert {a.status_code for a in answers} <= {202, 409}
    assert len({a.json()["batchId"] for a in answers if a.status_code == 202}) == 1
    for conflict in (a for a in answers if a.status_code == 409):
        assert conflict.headers["Retry-After"] and conflict.json()["error"]["code"] == "idempotency_key_in_progress"
    client = redis.Redis.from_url(idle_intake.redis_url)
    assert client.zcard(KEYS.batches) == 4  # upload-42 (one batch), TOKEN_B's, upload-44, upload-43 (one batch)


def _send(port: int, request: bytes) -> socket.socket:
    sock = socket.create_connection(("127.0.0.1", port), timeout=30)
    sock.sendall(request)
    return sock


def _close_request(wait: float) -> bytes:
    body = json.dumps({"conversationId": str(uuid.uuid4())}).encode()
    return (f"POST /v1/closes?wait={wait:g} HTTP/1.1\r\nHost: intake\r\nAuthorization: Bearer {TOKEN_A}\r\n"
            f"Content-Type: application/json\r\nContent-Length: {len(body)}\r\nConnection: close\r\n\r\n"
            ).encode() + body


def _answer(sock: socket.socket) -> tuple[int, dict[str, str], bytes]:
    response = http.client.HTTPResponse(sock)
    response.begin()
    return response.status, {k.lower(): v for k, v in response.getheaders()}, response.read()


def test_a_hundred_waits_leave_the_intake_answering(idle_intake: Intake) -> None:
    """100 concurrent ?wait=30 (INTAKE_MAX_WAITING=100) and no worker: while all of them wait, /healthz and a close
    without wait are answered, and a 101st wait is refused at once (503, Retry-After, nothing enqueued)."""
    client = redis.Redis.from_url(idle_intake.redis_url)
    sockets = [_send(idle_intake.port, _close_request(30)) for _ in range(100)]
    wait_until(lambda: client.hlen(KEYS.pending) == 100, timeout=30, message="the waits were not all enqueued")
    assert requests.get(f"{idle_intake.url}/healthz", timeout=5).status_code == 200
    single = idle_intake.call("POST", "/v1/closes", json={"conversationId": str(uuid.uuid4())})
    assert single.status_code == 202
    status, headers, body = _answer(_send(idle_intake.port, _close_request(30)))
    assert status == 503 and int(headers["retry-after"]) >= 1
    assert json.loads(body)["error"]["code"] == "too_many_waits" and json.loads(body)["error"]["requestId"]
    assert client.hlen(KEYS.pending) == 101  # the 100 waits and the single close; not the refused one
    selector = selectors.DefaultSelector()
    for sock in sockets:
        selector.register(sock, selectors.EVENT_READ)
    assert not selector.select(timeout=0)  # all 100 still wait: none answered yet
    for sock in sockets:
        sock.close()

    def admitted_again() -> bool:  # the callers left: their slots are free again
        return idle_intake.call("POST", "/v1/closes", params={"wait": 0.2},
                                json={"conversationId": str(uuid.uuid4())}).status_code == 202

    wait_until(admitted_again, timeout=10, message="the waits of departed callers kept their slots")


def test_chunked_bodies_over_the_limit_get_413(idle_intake: Intake) -> None:
    def chunks() -> Iterator[bytes]:
        for _ in range(50):
            yield b"x" * 100_000  # 5 MB against a 4 MB limit, no Content-Length

    for path, content_type in (("/v1/batches", "text/plain"), ("/v1/closes", "application/json")):
        answer = idle_intake.call("POST", path, data=chunks(), headers={"Content-Type": content_type})
        assert answer.status_code == 413, (path, answer.text)
        assert answer.json()["error"]["code"] == "body_too_large" and answer.json()["error"]["requestId"]
    assert "Traceback" not in idle_intake.log.read_text()


def test_slow_clients_are_cut_off(idle_intake: Intake) -> None:
    """Connections trickling their headers are closed after INTAKE_HEADER_TIMEOUT_SECONDS (1 s here), a body not
    received within INTAKE_BODY_TIMEOUT_SECONDS (2 s) gets 408; meanwhile the intake answers others."""
    trickling = [_send(idle_intake.port, b"GET /healthz HTTP/1.1\r\nHost: intake\r\n") for _ in range(49)]
    kept_alive = _send(idle_intake.port, b"GET /healthz HTTP/1.1\r\nHost: intake\r\n\r\n")
    assert _answer(kept_alive)[0] == 200
    kept_alive.sendall(b"GET /healthz HTTP/1.1\r\n")  # its next request trickles too
    trickling.append(kept_alive)
    closed: set[int] = set()

    def trickle_until_closed() -> bool:
        for index, sock in enumerate(trickling):
            if index in closed:
                continue
            try:
                sock.sendall(b"X-Slow: 1\r\n")  # a header line at a time, never the blank line
                sock.setblocking(False)
                if sock.recv(1) == b"":
                    closed.add(index)
            except BlockingIOError:
                pass
            except OSError:  # reset or broken pipe: the server closed it
                closed.add(index)
            finally:
                sock.setblocking(True)
        return len(closed) == len(trickling)

    assert requests.get(f"{idle_intake.url}/healthz", timeout=5).status_code == 200
    wait_until(trickle_until_closed, timeout=20, interval=0.2, message="trickling connections stayed open")
    slow_body = _send(idle_intake.port, (f"POST /v1/batches HTTP/1.1\r\nHost: intake\r\nAuthorization: Bearer "
                                         f"{TOKEN_A}\r\nContent-Type: text/plain\r\nContent-Length: 1000\r\n\r\n"
                                         f"{uuid.uuid4()}\n").encode())
    status, _, body = _answer(slow_body)
    assert status == 408 and json.loads(body)["error"]["code"] == "body_timeout"
    for sock in (*trickling, slow_body):
        sock.close()


def test_connections_beyond_the_limit_are_refused(idle_redis_url: str, tmp_path: Path) -> None:
    with running_intake(idle_redis_url, tmp_path / "intake.log", INTAKE_MAX_CONNECTIONS=10,
                        INTAKE_HEADER_TIMEOUT_SECONDS=60) as intake:
        idle = [socket.create_connection(("127.0.0.1", intake.port), timeout=30) for _ in range(10)]
        wait_until(lambda: requests.get(f"{intake.url}/healthz", timeout=5).status_code == 503, timeout=10,
                   message="the eleventh connection was served")
        for sock in idle:
            sock.close()
        wait_until(lambda: requests.get(f"{intake.url}/healthz", timeout=5).status_code == 200, timeout=10,
                   message="connections were not freed")
