"""Two batches of the same conversations at once PATCH each conversation once (issue 22: two concurrent bulk runs
of the same 200 ids PATCHed 23 conversations twice; the second PATCH got 409).

Both batches take the batched path (analytics pre-check, then a PATCH task): both pre-checks can see a
conversation open, and the in-flight lock alone serialises the two PATCH tasks without stopping the second. The
fresh look after the lock (``worker.running.patch_guard``) sees the other batch's PATCH and waits for its outcome
instead.
A direct-path close (a standalone ``.delay()``) racing a batch item is checked the same way.
"""

from __future__ import annotations

from concurrent.futures import ThreadPoolExecutor

from genesys_closer.emulator.admin import EmulatorAdmin
from genesys_closer.producer.api import CloseClient


def test_two_concurrent_batches_patch_each_conversation_once(admin: EmulatorAdmin, client: CloseClient) -> None:
    ids = admin.create(200)
    with ThreadPoolExecutor(2) as pool:
        batches = list(pool.map(lambda label: client.close_many(ids, label=label), ["first", "second"]))
    singles = [client.close(cid) for cid in ids[:20]]  # and standalone closes of some of them, on the direct path
    statuses = [batch.wait(timeout=180) for batch in batches]
    for task_id in singles:
        assert client.result(task_id, timeout=120).outcome.succeeded
    for status in statuses:
        assert status.done == status.total == 200
        assert set(status.counts) <= {"closed", "already_closed"}, status.counts
    assert admin.stats()["conversations_open"] == 0
    patches = {row["id"]: row["patches"] for row in admin.conversations()}  # one read of every conversation
    patched = [patches[cid] for cid in ids]
    assert patched == [1] * 200, {n: patched.count(n) for n in set(patched)}
    assert admin.stats()["duplicate_conversation_patches"] == 0
