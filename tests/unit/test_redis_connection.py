"""How long a caller waits for a Redis that stopped answering (found by a hostile-network pass: a SIGSTOPped Redis
held the CLI and every intake thread for 183 s, six 30-second timeouts)."""

from __future__ import annotations

import redis

from genesys_closer.shared.redis_connection import CALLER_SOCKET_TIMEOUT_SECONDS, SOCKET_TIMEOUT_SECONDS, connect

URL = "redis://127.0.0.1:1/0"  # never contacted: the client is only built


def test_a_caller_retries_refused_connections_but_not_a_silent_server() -> None:
    client = connect(URL, caller=True)
    options = client.connection_pool.connection_kwargs
    assert options["socket_timeout"] == CALLER_SOCKET_TIMEOUT_SECONDS < SOCKET_TIMEOUT_SECONDS
    retry = options["retry"]
    assert retry._supported_errors == (redis.ConnectionError,)  # a timeout is reported, not waited for again


def test_a_worker_rides_out_a_slow_server() -> None:
    retry = connect(URL).connection_pool.connection_kwargs["retry"]
    assert redis.TimeoutError in retry._supported_errors and redis.ConnectionError in retry._supported_errors
