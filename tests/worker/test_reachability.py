"""The reachability gate of one org's Genesys, against a real Redis: three timeouts in a row (fleet-wide) leave one
probe request out at a time and defer the others (RateLimited: their tasks wait with a countdown); any reply
opens the gate again. Another org's gate is its own."""

from __future__ import annotations

import pytest
import redis

from genesys_closer.config.redis_keys import keys_for
from genesys_closer.worker.genesys.errors import RateLimited
from genesys_closer.worker.genesys.reachability import TIMEOUTS_IN_A_ROW, RedisReachability


def gate(client: redis.Redis, org: str = "eu-prod") -> RedisReachability:
    return RedisReachability(client, keys_for(org), "bucket", probe_seconds=18.05)


def test_timeouts_in_a_row_leave_one_probe_out_and_a_reply_opens_the_gate(redis_client: redis.Redis) -> None:
    processes = [gate(redis_client) for _ in range(3)]  # three worker processes of one org
    for process in processes:
        process.before_send("GET /x")
    for _ in range(TIMEOUTS_IN_A_ROW - 1):
        processes[0].timed_out()
    processes[1].before_send("GET /x")  # a spike or two: nothing is gated
    processes[2].timed_out()
    processes[0].before_send("GET /x")  # the probe
    for process in processes[1:]:
        with pytest.raises(RateLimited) as deferred:
            process.before_send("PATCH /y")
        assert 1 <= (deferred.value.retry_after_seconds or 0) <= 20
    assert gate(redis_client, "us-prod").before_send("GET /x") is None  # another org is not gated
    processes[0].timed_out()  # the probe got no answer either: the next request probes
    processes[1].before_send("GET /x")
    processes[1].answered()  # the host answers again
    for process in processes:
        process.before_send("GET /x")
    assert not redis_client.exists(keys_for("eu-prod").rate_limit("bucket", "timeouts"))
