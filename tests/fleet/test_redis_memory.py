"""What a batched close costs in Redis, measured: at most 1 kB each for the retention period."""

from __future__ import annotations

import redis

from genesys_closer.emulator.admin import EmulatorAdmin
from genesys_closer.producer.api import CloseClient

BATCH = 300


def test_bytes_per_batched_close(admin: EmulatorAdmin, client: CloseClient, redis_url: str) -> None:
    raw = redis.Redis.from_url(redis_url)
    results_before = sum(1 for _ in raw.scan_iter("celery-task-meta-*", count=1000))
    batch = client.close_many(admin.create(BATCH), label="memory")
    status = batch.wait(timeout=120)
    assert status.counts == {"closed": BATCH}
    per_batch = [f"genesys-closer:batch:{batch.id}", f"genesys-closer:batch:{batch.id}:items",
                 f"genesys-closer:batch:{batch.id}:seen"]
    per_close = [key for key in raw.scan_iter("genesys-closer:outcome:*", count=1000)]
    assert len(per_close) == BATCH
    used = sum(int(raw.memory_usage(key, samples=0) or 0) for key in [*per_batch, *per_close])
    per_item = used / BATCH
    print(f"\nREDIS-MEMORY | {per_item:.0f} bytes per batched close ({BATCH} closes, {used:,} bytes)")
    assert per_item <= 1024
    assert sum(1 for _ in raw.scan_iter("celery-task-meta-*", count=1000)) == results_before  # no Celery results
    # ANALYTICS_VERIFY_SHARE (2%) of the items are also confirmed by a read (analytics+conversation): take another
    sampled = next(r for r in batch.results() if r.confirmed_by == "analytics")
    record = client.outcome(sampled.conversation_id)
    assert record is not None and record.batch_id == batch.id  # the reference resolves
    assert record.confirmed_by == "analytics" and 1 < record.api_calls < 1.2
