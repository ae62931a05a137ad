"""Failure stays with its item: poison messages, spoofed batch ids, widened options, far countdowns and bad files,
each sent to the shared fleet of real workers as a hostile or careless caller would."""

from __future__ import annotations

import json
import os
import subprocess
import sys
from concurrent.futures import ThreadPoolExecutor
from datetime import UTC, datetime, timedelta
from pathlib import Path

import pytest
from celery import Celery

from genesys_closer.emulator.admin import EmulatorAdmin
from genesys_closer.producer.api import CloseClient
from genesys_closer.shared.names import QUEUE_INTERACTIVE, TASK_NAME
from genesys_closer.shared.outcomes import Outcome
from tests.conftest import Fleet
from tests.fleet.conftest import cli
from tests.waiting import wait_until


def foreign(redis_url: str) -> Celery:
    return Celery("someone-else", broker=redis_url, backend=redis_url)


def rejected_task_ids(client: CloseClient) -> set[str]:
    return {str(row.get("task_id")) for row in client.rejected(1000)}


def probe(fleet: Fleet) -> list[int]:
    """The liveness probe's exit status for each worker (the probes run side by side, one process each)."""
    def one(hostname: str) -> int:
        run = subprocess.run([sys.executable, "-m", "genesys_closer.worker.ops.health", "--hostname", hostname,
                              "--timeout", "15"], env={**os.environ, "REDIS_URL": fleet.redis_url},
                             capture_output=True, text=True, timeout=60, check=False)
        return run.returncode

    with ThreadPoolExecutor(len(fleet.workers)) as pool:
        return list(pool.map(one, [worker.hostname for worker in fleet.workers]))


def test_poison_messages_never_stop_the_fleet(on_fleet: Fleet, admin: EmulatorAdmin, client: CloseClient) -> None:
    """After the poison, 20 closes sent at once (more than the fleet's 8 slots) all close."""
    app = foreign(on_fleet.redis_url)
    poison = [
        app.send_task(TASK_NAME, args=[json.loads("[" * 500 + "]" * 500)], queue=QUEUE_INTERACTIVE),  # 1: recursion
        app.send_task(TASK_NAME, args=["3b47a74f-a827-4166-ae62-f6ba6d7268ae"], kwargs={"x" * 1_000_000: 1},
                      queue=QUEUE_INTERACTIVE),  # 9: a 1 MB keyword name
        app.send_task(TASK_NAME, args=["a", "b", "c"], queue=QUEUE_INTERACTIVE),
    ]
    wait_until(lambda: {str(p.id) for p in poison} <= rejected_task_ids(client), timeout=60)
    ids = admin.create(20)
    task_ids = [client.close(cid) for cid in ids]
    results = [client.result(str(task_id), timeout=60) for task_id in task_ids]
    assert [r.outcome for r in results] == [Outcome.CLOSED] * 20  # type: ignore[union-attr]
    assert probe(on_fleet) == [0, 0]  # both workers still consume
    rows = {row["task_id"]: row for row in client.rejected(10)}
    reasons = [rows[str(p.id)]["error"] for p in poison]
    assert "nested deeper" in reasons[0] and "exceeds" in reasons[1] and "positional" in reasons[2]
    assert all(len(json.dumps(rows[str(p.id)])) < 1500 for p in poison)  # nothing echoed at length
    for worker in on_fleet.workers:
        assert max(map(len, worker.log_path.read_text(errors="replace").splitlines())) < 10_000


def test_spoofed_batch_ids_change_no_batch(admin: EmulatorAdmin, client: CloseClient, redis_url: str) -> None:
    items = admin.create(5)
    batch = client.close_many(items, label="the real one")
    before = batch.wait(timeout=60)
    others = admin.create(6)
    app = foreign(redis_url)
    spoofs: list[object] = [batch.id, batch.id + ":items", 123, {"a": 1}, "*", "f" * 32]
    sent = [app.send_task(TASK_NAME, args=[cid], kwargs={"batch_id": spoof})
            for cid, spoof in zip(others, spoofs, strict=True)]
    records = [r.get(timeout=60) for r in sent]
    assert [r["outcome"] for r in records] == ["closed"] * 6 and {r["batch_id"] for r in records} == {None}
    huge = app.send_task(TASK_NAME, args=[admin.create(1)[0]], kwargs={"batch_id": "x" * 1_000_000})
    wait_until(lambda: str(huge.id) in rejected_task_ids(client), timeout=60)
    after = batch.status()
    assert (after.total, after.done, after.counts) == (before.total, before.done, before.counts) == (5, 5,
                                                                                                      {"closed": 5})
    assert sorted(r.conversation_id for r in batch.results()) == sorted(items)  # only its own items
    exported = cli(redis_url, "results", batch.id, "--format", "jsonl")
    assert exported.returncode == 0 and len(exported.stdout.splitlines()) == 5
    retried = cli(redis_url, "retry", batch.id, "--outcome", "closed")
    assert retried.returncode == 0 and "already_closed=5" in retried.stdout


def test_options_never_widen_the_worker(admin: EmulatorAdmin, client: CloseClient, redis_url: str) -> None:
    """The fleet runs with CLOSE_POLICY unset (fail) and other message types off."""
    [stuck], [sms], [whatsapp] = admin.create(1, "stuck"), admin.create(1, "sms"), admin.create(1, "whatsapp")
    app = foreign(redis_url)
    asks = [app.send_task(TASK_NAME, args=[stuck], kwargs={"policy": "teardown"}),
            app.send_task(TASK_NAME, args=[sms], kwargs={"allow_other_message_types": True}),
            app.send_task(TASK_NAME, args=[whatsapp], kwargs={"skip_initial_get": True})]
    records = [r.get(timeout=60) for r in asks]
    assert [r["outcome"] for r in records] == ["invalid_request"] * 3
    assert "CLOSE_ALLOWED_POLICIES" in records[0]["error"]
    via_api = client.close(stuck, wait=True, timeout=60, policy="teardown")
    assert via_api.outcome is Outcome.INVALID_REQUEST  # type: ignore[union-attr]
    log = admin.requests()
    assert not [r for r in log if r["route"].endswith("/disconnect")]  # no teardown request, ever
    assert not [r for r in log if r["method"] != "POST" or r["route"] != "/oauth/token"]  # nothing was attempted
    assert {admin.conversation(cid)["open"] for cid in (stuck, sms, whatsapp)} == {True}


def test_far_countdown_is_refused_not_run_twice(admin: EmulatorAdmin, client: CloseClient, redis_url: str) -> None:
    """The fleet's broker visibility timeout is 35 s with a 25 s task time limit: a close may wait at most 10 s."""
    far, near = admin.create(2)
    late = foreign(redis_url).send_task(TASK_NAME, args=[far], countdown=150)
    wait_until(lambda: str(late.id) in rejected_task_ids(client), timeout=60)
    assert "safe window" in next(r["error"] for r in client.rejected(10) if r["task_id"] == str(late.id))
    with pytest.raises(ValueError, match="countdown must be between 0 and 10 s"):
        client.close(far, countdown=150)
    record = client.close(near, countdown=2, wait=True, timeout=60)
    assert record.outcome is Outcome.CLOSED  # type: ignore[union-attr]
    assert admin.conversation(near)["patches"] == 1 and admin.conversation(far)["patches"] == 0


def test_a_close_without_an_id_or_with_a_workflow_is_refused(admin: EmulatorAdmin, client: CloseClient,
                                                             redis_url: str) -> None:
    """No argument would fail in the pool with a traceback and no outcome; a link would make a close start another
    task (here a sweep). Both are refused before the pool, listed by `rejected`, and the linked one PATCHes nothing."""
    app = foreign(redis_url)
    cid = admin.create(1)[0]
    bare = app.send_task(TASK_NAME, args=[], queue=QUEUE_INTERACTIVE)
    linked = app.send_task(TASK_NAME, args=[cid], queue=QUEUE_INTERACTIVE,
                           link=app.signature("worker.tasks.sweep", kwargs={"filters": {}}, immutable=True))
    wait_until(lambda: {str(bare.id), str(linked.id)} <= rejected_task_ids(client), timeout=60)
    errors = {row["task_id"]: row["error"] for row in client.rejected(20)}
    assert "no conversation_id" in errors[str(bare.id)]
    assert "not accepted" in errors[str(linked.id)]
    assert admin.conversation(cid)["patches"] == 0


@pytest.mark.parametrize(("name", "content", "args"), [
    ("binary.txt", b"\x89PNG\r\n\x1a\n\x00\xff\xfe" * 100, []),
    ("no-column.csv", b"name,other\nx,y\n", []),
    ("huge-field.csv", b"conversationId\n" + b"a" * (50 * 1024 * 1024) + b"\n", []),
    ("ids.txt", b"3b47a74f-a827-4166-ae62-f6ba6d7268ae\n", ["--format", "yaml"]),
])
def test_bad_files_leave_no_batch_behind(client: CloseClient, redis_url: str, tmp_path: Path, name: str,
                                         content: bytes, args: list[str]) -> None:
    source = tmp_path / name
    source.write_bytes(content)
    run = cli(redis_url, "bulk", str(source), *args)
    assert run.returncode == 2, (run.stdout, run.stderr)
    assert len(run.stderr.strip().splitlines()) == 1 and run.stderr.startswith("error: ")
    assert client.batches() == []  # nothing half-made left behind


def test_deeply_nested_jsonl_line_is_one_invalid_item(admin: EmulatorAdmin, client: CloseClient, redis_url: str,
                                                      tmp_path: Path) -> None:
    [good] = admin.create(1)
    source = tmp_path / "ids.jsonl"
    source.write_text(json.dumps({"conversation_id": good}) + "\n" + "[" * 100_000 + "]" * 100_000 + "\n")
    run = cli(redis_url, "bulk", str(source))
    assert run.returncode == 1 and "closed=1" in run.stdout and "invalid_id=1" in run.stdout
    [status] = client.batches()
    assert status.finished and status.total == 2


def test_hostile_headers_end_with_an_outcome(admin: EmulatorAdmin, client: CloseClient, redis_url: str) -> None:
    """Retry counts, time limits, expiry and ETAs set by a message only narrow what the worker allows (issue 22: a
    soft time limit of 0.01 s looped forever, each run retried with the header; an expired close ended REVOKED with
    no outcome)."""
    ids = admin.create(9)
    app = foreign(redis_url)
    past = datetime.now(UTC) - timedelta(minutes=5)
    refused = [app.send_task(TASK_NAME, args=[ids[0]], soft_time_limit=0.01),
               app.send_task(TASK_NAME, args=[ids[1]], time_limit=86_400),  # would outlive the visibility timeout
               app.send_task(TASK_NAME, args=[ids[2]], time_limit=0.5),
               app.send_task(TASK_NAME, args=[ids[3]], headers={"expires": "soon"}),
               app.send_task(TASK_NAME, args=[ids[4]], retries=-1000),  # every backoff would shrink to nothing
               app.send_task(TASK_NAME, args=[ids[5]], retries=10**6)]  # would fake the record's attempts
    expired = [app.send_task(TASK_NAME, args=[ids[6]], expires=past),
               app.send_task(TASK_NAME, args=[ids[7]], countdown=3, expires=1.0)]  # expires while it waits its ETA
    kept = app.send_task(TASK_NAME, args=[ids[8]], countdown=1, expires=120)  # a narrowing it can keep
    assert kept.get(timeout=60)["outcome"] == "closed"
    sent = {str(r.id) for r in refused + expired}
    wait_until(lambda: sent <= rejected_task_ids(client), timeout=60)
    rows = {row["task_id"]: row for row in client.rejected(50)}
    assert [rows[str(r.id)]["outcome"] for r in refused] == ["invalid_request"] * 6
    assert "soft_time_limit 0.01" in rows[str(refused[0].id)]["error"]
    assert "unreadable expires" in rows[str(refused[3].id)]["error"]
    assert "not a count of retries" in rows[str(refused[4].id)]["error"]
    assert "TASK_MAX_RETRIES" in rows[str(refused[5].id)]["error"]
    for message in refused + expired:  # the sender's own result is the outcome record, never REVOKED or nothing
        assert message.get(timeout=30)["outcome"] == rows[str(message.id)]["outcome"]
    for message in expired:
        assert rows[str(message.id)]["outcome"] == "not_attempted"
        assert "expired before it ran" in rows[str(message.id)]["error"]
    assert [admin.conversation(cid)["patches"] for cid in ids] == [0] * 8 + [1]
    assert {admin.conversation(cid)["open"] for cid in ids[:8]} == {True}
    assert not dict(client.results.pending.entries())  # nothing left for the recovery check to re-send


def test_a_close_that_expires_while_retrying_ends_not_attempted(admin: EmulatorAdmin, client: CloseClient,
                                                                redis_url: str) -> None:
    """Every retry keeps the message's ``expires``: Genesys is unreachable, the close is retried with countdowns, and
    the copy that comes after its expiry ends ``not_attempted`` with a rejected entry instead of REVOKED and nothing."""
    [cid] = admin.create(1)
    admin.faults(unavailable_seconds=8)
    sent = foreign(redis_url).send_task(TASK_NAME, args=[cid], expires=2.0)
    wait_until(lambda: str(sent.id) in rejected_task_ids(client), timeout=60)
    row = next(r for r in client.rejected(50) if r["task_id"] == str(sent.id))
    assert row["outcome"] == "not_attempted" and "expired before it ran" in row["error"]
    assert admin.conversation(cid)["patches"] == 0
    assert not dict(client.results.pending.entries())
