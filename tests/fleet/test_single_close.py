"""One close at a time, through every door an app can use."""

from __future__ import annotations

import json

import pytest
import redis
from celery import Celery

from genesys_closer.emulator.admin import EmulatorAdmin
from genesys_closer.producer.api import CloseClient
from genesys_closer.shared.outcomes import CloseResult, Outcome


def test_delay_from_an_app_with_the_package(admin: EmulatorAdmin, client: CloseClient,
                                            monkeypatch: pytest.MonkeyPatch) -> None:
    from genesys_closer import close_conversation
    from genesys_closer.config.settings import get_producer_settings
    from genesys_closer.producer.api import default_client

    monkeypatch.setenv("REDIS_URL", client.settings.redis_url)
    get_producer_settings.cache_clear()
    default_client.cache_clear()
    [cid] = admin.create(1)
    record = close_conversation.delay(cid).get(timeout=60)
    assert record["outcome"] == "closed" and record["conversation_id"] == cid
    assert record["api_calls"] == 3 and record["attempts"] == 1
    assert set(record) >= {"started_at", "finished_at", "participant_states", "correlation_ids"}
    assert admin.conversation(cid)["open"] is False
    stored = client.outcome(cid)
    assert stored is not None and stored.outcome is Outcome.CLOSED


def test_send_task_from_an_app_with_only_celery(admin: EmulatorAdmin, redis_url: str) -> None:
    foreign = Celery("someone-else", broker=redis_url, backend=redis_url)
    [cid] = admin.create(1)
    record = foreign.send_task("worker.tasks.close_conversation", args=[cid]).get(timeout=60)
    assert record["outcome"] == "closed"


def test_producer_close_and_wait(admin: EmulatorAdmin, client: CloseClient) -> None:
    closed, gone, sms = admin.create(1)[0], admin.create(1, "disconnected")[0], admin.create(1, "sms")[0]
    results = {cid: client.close(cid, wait=True, timeout=60) for cid in (closed, gone, sms)}
    assert all(isinstance(r, CloseResult) for r in results.values())
    assert [r.outcome for r in results.values()] == [Outcome.CLOSED, Outcome.ALREADY_CLOSED,  # type: ignore[union-attr]
                                                     Outcome.NOT_WEB_MESSAGING]
    missing = client.close("00000000-0000-4000-8000-000000000000", wait=True, timeout=60)
    assert missing.outcome is Outcome.NOT_FOUND  # type: ignore[union-attr]


@pytest.mark.parametrize("raw", ["../x", "", "x" * 10_000, 12345, None])
def test_foreign_app_sends_garbage(admin: EmulatorAdmin, redis_url: str, raw: object) -> None:
    foreign = Celery("someone-else", broker=redis_url, backend=redis_url)
    record = foreign.send_task("worker.tasks.close_conversation", args=[raw]).get(timeout=60)
    assert record["outcome"] == "invalid_id" and "invalid conversation id" in record["error"]
    assert len(json.dumps(record)) < 2000
    assert admin.stats()["requests_total"] == 0


def test_unknown_option_fails_clearly(admin: EmulatorAdmin, redis_url: str) -> None:
    foreign = Celery("someone-else", broker=redis_url, backend=redis_url)
    [cid] = admin.create(1)
    record = foreign.send_task("worker.tasks.close_conversation", args=[cid], kwargs={"explode": True}).get(timeout=60)
    assert record["outcome"] == "invalid_request" and "unknown close option" in record["error"]
    assert admin.stats()["requests_total"] == 0


def test_results_and_redis_hold_no_secret_or_token(admin: EmulatorAdmin, client: CloseClient,
                                                   redis_url: str) -> None:
    ids = admin.create(3)
    for cid in ids:
        client.close(cid, wait=True, timeout=60)
    raw = redis.Redis.from_url(redis_url)
    blob = b"".join((raw.dump(k) or b"") for k in raw.keys("*"))
    assert b"demo-secret" not in blob
    assert b"Bearer" not in blob
