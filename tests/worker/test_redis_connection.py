"""The one Redis client factory and the producers' replication wait, on a real redis-server (no replica)."""

from __future__ import annotations

import pytest
import redis

from genesys_closer.config import load_producer_settings
from genesys_closer.producer.api import CloseClient
from genesys_closer.shared.redis_connection import NotReplicatedError, await_replicas, connect

CONVERSATION = "3b47a74f-a827-4166-ae62-f6ba6d7268ae"


def test_a_plain_url_gives_a_plain_client(redis_url: str) -> None:
    client = connect(redis_url)
    assert client.ping() and client.get_connection_kwargs()["health_check_interval"] == 10
    assert type(client.connection_pool) is redis.ConnectionPool


def test_no_wait_by_default_and_a_missing_replica_is_an_error(redis_client: redis.Redis) -> None:
    await_replicas(redis_client, 0)  # the default: nothing asked, nothing waited for
    with pytest.raises(NotReplicatedError, match=r"0 of 1 Redis replica.*REDIS_WAIT_REPLICAS"):
        await_replicas(redis_client, 1, timeout_ms=50)
    assert isinstance(NotReplicatedError("x"), redis.ConnectionError)  # the intake answers 503, retry later


def test_a_close_is_not_reported_accepted_before_a_replica_has_it(redis_url: str) -> None:
    client = CloseClient(load_producer_settings(redis_url=redis_url, redis_wait_replicas=1))
    with pytest.raises(NotReplicatedError):
        client.send_close(CONVERSATION)
    # It is on the master all the same (tracked, queued): sending it again is harmless, a close is idempotent.
    assert [entry["conversation_id"] for _, entry in client.results.pending.entries()] == [CONVERSATION]
