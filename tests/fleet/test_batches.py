"""Batches on the shared fleet: the shared pause and token, duplicates, invalid IDs."""

from __future__ import annotations

from collections import Counter

import redis

from genesys_closer.config.redis_keys import KEYS, client_digest
from genesys_closer.emulator.admin import EmulatorAdmin
from genesys_closer.producer.api import CloseClient
from genesys_closer.shared.outcomes import Outcome
from genesys_closer.shared.stores.batch_store import BatchStatus
from tests.waiting import wait_until


def test_429_storm_pauses_the_fleet_once(admin: EmulatorAdmin, client: CloseClient,
                                         redis_client: redis.Redis) -> None:
    ids = admin.create(100)
    # The storm begins mid-batch, at its 30th PATCH (watching the batch's progress from here raced the workers: on a
    # quiet machine every PATCH could be answered before the storm was set). Its 429s say "retry in 1 s" (the second
    # it has left): one pause covers it.
    admin.faults(storm_429_seconds=1, storm_429_after_patches=30)
    batch = client.close_many(ids)
    status = batch.wait(timeout=120)
    assert status.counts == {"closed": 100}
    pauses = int(redis_client.get(KEYS.rate_limit(client_digest("demo-client"), "pauses")) or 0)
    limited = admin.stats()["responses_by_status"].get("429", 0)
    assert pauses == 1
    assert 1 <= limited <= 2 * 8  # only what was in flight when the storm began
    assert admin.stats()["conversations_open"] == 0


def test_token_revocation_mid_batch_fetches_one_token(admin: EmulatorAdmin,
                                                      client: CloseClient) -> None:
    ids = admin.create(100)
    batch = client.close_many(ids)
    wait_until(lambda: batch.status().done >= 40)
    assert admin.stats()["token_requests"] == 1
    admin.revoke_tokens()
    later = client.close_many(admin.create(40))  # requests after the revocation, even if the first batch is done
    status = batch.wait(timeout=120)
    assert status.counts == {"closed": 100}
    assert later.wait(timeout=120).counts == {"closed": 40}
    assert admin.stats()["token_requests"] == 2  # one new token for the whole fleet
    assert admin.stats()["responses_by_status"].get("401", 0) >= 1


def test_duplicate_ids_and_messages_close_once(admin: EmulatorAdmin,
                                               client: CloseClient) -> None:
    a, b, c = admin.create(3)
    batch = client.close_many([a, a, b, b, b, c, a.upper()])
    singles = [client.close(a) for _ in range(3)] + [client.close(b)]
    status = batch.wait(timeout=60)
    assert status.total == 3 and status.duplicates == 4 and status.done == 3
    for task_id in singles:
        client.app.AsyncResult(task_id).get(timeout=60)
    for cid in (a, b, c):
        assert admin.conversation(cid)["patches"] == 1
        assert admin.conversation(cid)["open"] is False
    outcomes = Counter(r.outcome for r in batch.results())
    assert sum(outcomes.values()) == 3 and set(outcomes) <= {Outcome.CLOSED, Outcome.ALREADY_CLOSED}


def test_batch_with_invalid_ids_records_them_and_closes_the_rest(admin: EmulatorAdmin,
                                                                 client: CloseClient) -> None:
    good = admin.create(5)
    batch = client.close_many([*good, "../etc/passwd", "", "nope", None, 7])
    status: BatchStatus = batch.wait(timeout=60)
    assert status.total == 10 and status.counts == {"closed": 5, "invalid_id": 5}
    routes = admin.stats()["requests_by_route"]
    assert routes.get("PATCH /api/v2/conversations/messages/{conversationId}") == 5  # and batched reads:
    assert 2 <= routes.get("GET /api/v2/analytics/conversations/details", 0) <= 4  # pre-check + confirmation
    # plus, per confirmation read, the sample of it verified live (ANALYTICS_VERIFY_SHARE, at least one)
    assert routes.get("GET /api/v2/conversations/messages/{conversationId}", 0) <= 2
