"""Flower in front of the shared fleet: a real Flower process, read through its HTTP API (``/api/tasks``)."""

from __future__ import annotations

import ast
import json
from collections.abc import Iterator
from contextlib import contextmanager
from pathlib import Path
from typing import Any

import pytest
import requests

from genesys_closer.config import ProducerSettings
from genesys_closer.emulator import EmulatorServer
from genesys_closer.emulator.admin import EmulatorAdmin
from genesys_closer.producer.api import CloseClient
from genesys_closer.shared.names import TASK_NAME
from genesys_closer.worker.ops.task_events import WAITING_STATE
from tests.conftest import Fleet
from tests.services import FlowerProcess, worker_env
from tests.waiting import wait_until


@contextmanager
def flower_watching(redis_url: str, emulator: EmulatorServer, logdir: Path) -> Iterator[FlowerProcess]:
    """A Flower process on the fleet, once it follows the workers' events (it lists both workers once it does)."""
    flower = FlowerProcess(worker_env(redis_url, emulator.base_url), logdir).start()
    try:
        wait_until(lambda: len(requests.get(f"{flower.url}/api/workers", params={"refresh": "1"},
                                            auth=(flower.user, flower.password), timeout=10).json()) >= 2, timeout=30)
        yield flower
    finally:
        flower.stop()


@pytest.fixture(scope="module")
def flower(fleet: Fleet, tmp_path_factory: pytest.TempPathFactory) -> Iterator[FlowerProcess]:
    """One Flower for the module's tests (starting one and waiting until it lists both workers takes ~1.5 s): it
    keeps every task it has seen, and each test reads only its own closes' tasks (by conversation, by batch)."""
    with flower_watching(fleet.redis_url, fleet.emulator, tmp_path_factory.mktemp("flower")) as process:
        yield process


def flower_tasks(flower: FlowerProcess) -> dict[str, dict[str, Any]]:
    answer = requests.get(f"{flower.url}/api/tasks", auth=(flower.user, flower.password), timeout=10)
    answer.raise_for_status()
    tasks: dict[str, dict[str, Any]] = answer.json()
    return tasks


def close_tasks_by_conversation(tasks: dict[str, dict[str, Any]],
                                batch_id: str | None = None) -> dict[str, list[dict[str, Any]]]:
    """Every close task Flower knows (of one batch, when ``batch_id`` is given), by conversation, in the order the
    workers received them."""
    found: dict[str, list[dict[str, Any]]] = {}
    for task in tasks.values():
        if task.get("name") != TASK_NAME or not task.get("args"):
            continue
        if batch_id is None or ast.literal_eval(task.get("kwargs") or "{}").get("batch_id") == batch_id:
            found.setdefault(ast.literal_eval(task["args"])[0], []).append(task)
    for listed in found.values():
        listed.sort(key=lambda task: task.get("received") or 0.0)
    return found


def shown_result(task: dict[str, Any]) -> dict[str, Any]:
    """A task's result as Flower shows it (the worker's repr of the returned record)."""
    result = ast.literal_eval(task.get("result") or "None")
    return result if isinstance(result, dict) else {}


def test_flower_shows_tasks_behind_basic_auth(admin: EmulatorAdmin, client: CloseClient, emulator: EmulatorServer,
                                              flower: FlowerProcess) -> None:
    ids = admin.create(3)
    for task_id in [client.close(cid) for cid in ids]:  # sent at once, each waited for
        client.result(str(task_id), timeout=60)
    assert requests.get(f"{flower.url}/api/tasks", timeout=10).status_code == 401
    assert requests.get(f"{flower.url}/api/tasks", auth=(flower.user, "wrong"), timeout=10).status_code == 401

    def all_shown() -> bool:
        shown = close_tasks_by_conversation(flower_tasks(flower))
        return all(shown.get(cid) and shown[cid][-1].get("state") == "SUCCESS" for cid in ids)

    wait_until(all_shown, timeout=30, interval=0.3, message="every close shown SUCCESS")
    tasks = flower_tasks(flower)
    shown = close_tasks_by_conversation(tasks)
    for cid in ids:
        assert shown_result(shown[cid][-1])["outcome"] == "closed"
    page = json.dumps(tasks)
    assert "demo-secret" not in page and "Bearer" not in page
    for token in list(emulator.state.tokens):
        assert token not in page


def test_flower_shows_a_waiting_batch_item_waiting_and_its_last_task_its_outcome(
        admin: EmulatorAdmin, client: CloseClient, emulator: EmulatorServer, flower: FlowerProcess, on_fleet: Fleet,
        producer_settings: ProducerSettings) -> None:
    """A batch with analytics lagging: its items wait for the batched pre-check and confirmation reads. While they
    wait, none of their close tasks is SUCCESS in Flower (SUCCESS only once the outcome is recorded); at the end
    every conversation's last close task is SUCCESS with the recorded outcome, at no extra Genesys call. A batch of
    another org shows its org on every task."""
    admin.faults(analytics_lag_ms=1500)  # the confirmation read shows the end 1.5 s after the PATCH: items wait
    ids = admin.create(30)
    batch = client.close_many(ids)
    states_seen: dict[str, set[str]] = {cid: set() for cid in ids}
    waiting_for: set[str] = set()
    snapshots = 0

    def check_snapshot() -> bool:
        """Flower first, then the records: a task Flower shows SUCCESS must have its outcome recorded by now."""
        nonlocal snapshots
        shown = close_tasks_by_conversation(flower_tasks(flower), batch.id)
        done = batch.status().done
        recorded = {r.conversation_id: r.outcome.value for r in batch.results()}
        snapshots += 1
        for cid in ids:
            for task in shown.get(cid, []):
                states_seen[cid].add(task["state"])
                if task["state"] == WAITING_STATE:
                    waiting_for.add(shown_result(task)["waiting_for"])
                if task["state"] == "SUCCESS":
                    assert cid in recorded, f"{cid} shown SUCCESS before its outcome was recorded: {task}"
                    assert shown_result(task)["outcome"] == recorded[cid]
        return done == len(ids)

    wait_until(check_snapshot, timeout=120, interval=0.2, message="batch done")
    status = batch.wait(timeout=10)
    assert status.counts == {"closed": 30}
    records = {r.conversation_id: r for r in batch.results()}
    calls_at_end = [r for r in admin.requests() if r["route"] != "/oauth/token"]

    def last_tasks_show_outcomes() -> bool:
        shown = close_tasks_by_conversation(flower_tasks(flower), batch.id)
        return all(shown.get(cid) and shown[cid][-1]["state"] == "SUCCESS" for cid in ids)

    wait_until(last_tasks_show_outcomes, timeout=30, interval=0.3, message="every last task SUCCESS")
    tasks = flower_tasks(flower)
    shown = close_tasks_by_conversation(tasks, batch.id)
    for cid in ids:
        last = shown[cid][-1]
        result = shown_result(last)
        assert result["outcome"] == records[cid].outcome.value
        assert result["batch_id"] == batch.id and result["conversation_id"] == cid
        assert ast.literal_eval(last["kwargs"])["batch_id"] == batch.id  # kwargs (the org too) are shown
        assert all(task["state"] == WAITING_STATE for task in shown[cid][:-1])  # none of its earlier tasks closed
    # The items went through both batched reads, and the pump's reports made the waiting tasks' ends visible.
    assert waiting_for == {"batched precheck", "batched confirm"}
    assert snapshots >= 2 and any(WAITING_STATE in seen for seen in states_seen.values())
    by_pump = [cid for cid in ids if records[cid].confirmed_by == "analytics"]
    assert by_pump and all(shown_result(shown[cid][-1])["confirmed_by"] == "analytics" for cid in by_pump)
    # Genesys calls: exactly those the records count (reads as shares), one PATCH each; showing the outcomes in
    # Flower made none (the emulator's count did not move while Flower caught up).
    assert [r for r in admin.requests() if r["route"] != "/oauth/token"] == calls_at_end
    assert abs(sum(r.api_calls for r in records.values()) - len(calls_at_end)) <= 1
    assert sum(1 for r in calls_at_end if r["method"] == "PATCH") == 30
    page = json.dumps(tasks)
    assert "demo-secret" not in page and "Bearer" not in page
    assert not any(token in page for token in list(emulator.state.tokens))

    # Another org's batch: its org is in every task's kwargs and in what its tasks report.
    org_ids = on_fleet.org_admin("org-a").create(5)
    org_batch = CloseClient(producer_settings, org="org-a").close_many(org_ids)
    assert org_batch.wait(timeout=60).counts == {"closed": 5}

    def org_tasks_shown() -> bool:
        shown = close_tasks_by_conversation(flower_tasks(flower), org_batch.id)
        return all(shown.get(cid) and shown[cid][-1]["state"] == "SUCCESS" for cid in org_ids)

    wait_until(org_tasks_shown, timeout=30, interval=0.3, message="the org's last tasks SUCCESS")
    shown = close_tasks_by_conversation(flower_tasks(flower), org_batch.id)
    for cid in org_ids:
        assert all(ast.literal_eval(task["kwargs"]).get("org") == "org-a" for task in shown[cid])
        assert all(shown_result(task)["org"] == "org-a" for task in shown[cid])  # waiting and ended alike
        assert shown_result(shown[cid][-1])["outcome"] == "closed"
