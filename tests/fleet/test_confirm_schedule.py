"""The confirmation schedule a batch item gets is the one configured: its first batched confirmation read is due
``CONFIRM_ANALYTICS_FIRST_CHECK_SECONDS`` after its PATCH (0.3 s on the fleet, tests/services.py). The PATCH task once
asked ``next_step`` without the configured timing and got the default's 1 s, so every batch item waited 0.7 s more
than configured for its confirmation."""

from __future__ import annotations

import redis

from genesys_closer.config.redis_keys import KEYS
from genesys_closer.emulator.admin import EmulatorAdmin
from genesys_closer.producer.api import CloseClient
from tests.services import worker_env
from tests.waiting import wait_until

FIRST_CHECK = float(worker_env("redis://unused", "http://unused")["CONFIRM_ANALYTICS_FIRST_CHECK_SECONDS"])


def test_the_first_confirmation_read_is_due_when_configured(admin: EmulatorAdmin, client: CloseClient,
                                                            redis_client: redis.Redis) -> None:
    [cid] = admin.create(1)
    batch = client.close_many([cid])
    token = f"{batch.id}:{cid}"
    seen: list[tuple[float, float]] = []

    def in_confirm_set() -> bool:
        pipe = redis_client.pipeline(transaction=False)
        pipe.zscore(KEYS.checks("confirm"), token)
        pipe.hget(KEYS.progress(cid, batch.id), "patched_at")
        due, patched_at = pipe.execute()
        if due is not None and patched_at is not None:
            seen.append((float(due), float(patched_at)))
        return bool(seen)

    wait_until(in_confirm_set, timeout=30, interval=0.01, message="the item waits for its confirmation read")
    [(due, patched_at)] = seen
    assert abs(due - patched_at - FIRST_CHECK) < 0.05  # both stamped by the PATCH task, a few ms apart
    assert batch.wait(timeout=60).counts == {"closed": 1}
