"""An operator's clean-up in the browser, as the README's "A real cleanup, step by step" does it with the CLI: preview
a sweep, close exactly what it found, watch it to the end, filter the failures, download the CSV, retry them once
their cause is fixed; paste a list, dry-run it, start it and cancel it; check readiness and the fleet. Real Chromium,
intake, Redis, workers and emulator; every wait is on a condition of the page."""

from __future__ import annotations

import csv
from pathlib import Path

from selenium.webdriver.common.by import By
from selenium.webdriver.remote.webelement import WebElement
from selenium.webdriver.support import expected_conditions as ec

from tests.console.conftest import Operator
from tests.waiting import wait_until


def el(operator: Operator, css: str) -> WebElement:
    return operator.driver.find_element(By.CSS_SELECTOR, css)


def rows(operator: Operator, css: str) -> list[list[str]]:
    """A table's cells as the page shows them now, read in one step (live tables are re-rendered meanwhile)."""
    cells: list[list[str]] = operator.driver.execute_script(
        "return [...document.querySelectorAll(arguments[0] + ' tbody tr:not(.empty)')]"
        ".map(row => [...row.querySelectorAll('td')].map(td => td.innerText.trim()));", css)
    return cells


def batch_id_of(operator: Operator) -> str:
    operator.wait(ec.url_matches(r"/ui/batches/[0-9a-f]{32}$"))
    operator.ready()  # the page's buttons have their handlers (a click before would do nothing)
    return operator.driver.current_url.rsplit("/", 1)[1]


def test_sweep_preview_close_watch_filter_download_retry(operator: Operator) -> None:
    old = operator.admin.create(20, age_minutes=180)
    stuck = operator.admin.create(2, "stuck", age_minutes=180)  # ignores the close: unconfirmed
    operator.admin.create(3, age_minutes=10)  # too young
    operator.open("/ui/sweep")
    age = el(operator, "#min-age")
    age.clear()
    age.send_keys("60")
    lookback = el(operator, "#lookback")
    lookback.clear()
    lookback.send_keys("1")
    el(operator, "#preview").click()
    operator.text_in("#sweep-summary", "22 chosen")
    table = rows(operator, "#candidates")
    chosen = {row[0] for row in table if row[1] == "close"}
    assert chosen == set(old) | set(stuck) and all(row[3] for row in table)  # each with its reason
    assert operator.admin.stats()["conversation_patches"] == 0  # a preview closes nothing
    confirm = el(operator, "#confirm-count")
    confirm.send_keys("21")
    assert not el(operator, "#close-these").is_enabled()  # the count must be typed exactly,
    sweep_id = el(operator, "#sweep-result").get_attribute("data-sweep")
    mismatch = operator.api("POST", f"/v1/sweeps/{sweep_id}/close", json={"confirm": 21})
    assert mismatch.status_code == 422 and mismatch.json()["error"]["code"] == "confirmation_mismatch"  # also there
    confirm.clear()
    confirm.send_keys("22")
    el(operator, "#close-these").click()
    swept = batch_id_of(operator)
    again = operator.api("POST", f"/v1/sweeps/{sweep_id}/close", json={"confirm": 22})  # a double click's second
    assert again.status_code == 200 and again.json()["batchId"] == swept  # the batch already started, not another
    operator.text_in("#state", "finished")  # live, by Server-Sent Events
    operator.text_in("#done", "22/22")
    assert {c: operator.admin.conversation(c)["open"] for c in old} == dict.fromkeys(old, False)
    live_reads = [r["conversation_id"] for r in operator.admin.requests()
                  if r["method"] == "GET" and r["route"].endswith("/messages/{conversationId}")]
    assert sorted(c for c in live_reads if c in stuck) == sorted(stuck)  # one read each, after the analytics window

    operator.driver.find_element(By.CSS_SELECTOR, "#filter-outcome option[value='unconfirmed']").click()
    el(operator, "#apply-filter").click()
    operator.wait(lambda d: {r[0] for r in rows(operator, "#items")} == set(stuck))
    assert {r[1] for r in rows(operator, "#items")} == {"unconfirmed"}

    el(operator, "#download-csv").click()
    downloads: Path = operator.driver.downloads  # type: ignore[attr-defined]
    exported = downloads / f"batch-{swept}.csv"
    wait_until(lambda: exported.exists() and not list(downloads.glob("*.crdownload")), timeout=30)
    with exported.open(newline="") as file:
        records = list(csv.DictReader(file))
    assert len(records) == 22 and sum(r["outcome"] == "unconfirmed" for r in records) == 2

    for conversation in stuck:  # the README's step 6: retry what failed once the cause is fixed
        operator.admin.fix(conversation)
    el(operator, "#retry input[value='failed']").click()  # checked by default; retry the unconfirmed ones instead
    el(operator, "#retry input[value='unconfirmed']").click()
    el(operator, "#retry-button").click()
    operator.wait(lambda d: d.current_url.rsplit("/", 1)[1] != swept)
    retried = batch_id_of(operator)
    operator.text_in("#state", "finished")
    operator.text_in("#done", "2/2")
    retry = operator.api("GET", f"/v1/batches/{retried}").json()
    assert retry["source"] == f"retry:{swept}" and retry["counts"] == {"closed": 2}
    assert not any(operator.admin.conversation(c)["open"] for c in stuck)
    assert len(operator.api("GET", "/v1/batches").json()["batches"]) == 2  # the sweep's batch once, its retry once


def test_upload_a_csv_name_its_column_and_dry_run_it(operator: Operator, tmp_path: Path) -> None:
    ids = operator.admin.create(3)
    upload = tmp_path / "stuck-sessions.csv"
    upload.write_text(f"name,Conversation ID\na,{ids[0]}\nb,oops\nc,{ids[1]}\nd,{ids[2]}\n")  # as an export names it
    operator.open("/ui/new")
    el(operator, "#file").send_keys(str(upload))
    operator.text_in("#browser-check", "first at line 1")  # no usual ID column: the operator names it
    el(operator, "#column").send_keys("Conversation ID")
    operator.text_in("#browser-check", "first at line 3")
    el(operator, "#dry-run").click()
    operator.text_in("#dry-summary", "3 valid unique id(s)")
    assert rows(operator, "#problems")[0][:2] == ["3", "oops"]  # the file's own line number
    el(operator, "#start").click()
    batch_id = batch_id_of(operator)
    operator.text_in("#state", "finished")
    assert operator.api("GET", f"/v1/batches/{batch_id}").json()["counts"] == {"closed": 3, "invalid_id": 1}


def test_paste_dry_run_start_and_cancel(operator: Operator) -> None:
    stuck = operator.admin.create(40, "stuck")  # each takes the confirmation timeout: the batch runs long
    pasted = [stuck[0], "", "not-an-id", "# a comment", *stuck[1:], stuck[1]]
    operator.open("/ui/new")
    el(operator, "#new-label").send_keys("pasted list")
    el(operator, "#ids").send_keys("\n".join(pasted))
    operator.text_in("#browser-check", "first at line 3")  # the browser's own check, before the server's
    el(operator, "#dry-run").click()
    operator.text_in("#dry-summary", "40 valid unique id(s)")
    assert rows(operator, "#problems")[0][:2] == ["3", "not-an-id"]
    assert "1 duplicate" in el(operator, "#dry-summary").text
    el(operator, "#start").click()
    batch_id = batch_id_of(operator)
    operator.text_in("#label", "pasted list")
    el(operator, "#cancel").click()
    operator.alert().accept()  # the click handler's confirm(), once it is open
    operator.text_in("#state", "cancelled")
    operator.text_in("#finished", "UTC")  # the items already running finish; the rest end cancelled
    counts = operator.api("GET", f"/v1/batches/{batch_id}").json()["counts"]
    assert counts.get("cancelled", 0) > 0 and sum(counts.values()) == 41  # 40 ids and the invalid line
    operator.open("/ui/batches")
    operator.text_in(f"tr[data-batch='{batch_id}'] td.state", "cancelled")


def test_readiness_and_fleet(operator: Operator) -> None:
    ids = operator.admin.create(5)
    started = operator.api("POST", "/v1/batches", json={"conversationIds": ids}).json()
    wait_until(lambda: operator.api("GET", started["statusUrl"]).json()["finished_at"], timeout=60)
    calls = operator.admin.stats()["requests_by_route"]  # the batch's Genesys calls (readiness makes its own)
    operator.open("/ui/readiness")
    operator.text_in("#ready-summary", "Checked")
    checks = rows(operator, "#checks")
    assert checks and all(row[3] for row in checks if row[1] == "FAIL")  # every problem has its fix
    operator.open("/ui/fleet")
    operator.wait(ec.presence_of_element_located((By.CSS_SELECTOR, "body[data-fleet='shown']")))
    assert el(operator, "#workers").text.startswith("2")
    bars = operator.driver.find_elements(By.CSS_SELECTOR, ".bucket .rate-chart rect.used")
    assert len(bars) == 60
    assert operator.driver.find_elements(By.CSS_SELECTOR, ".bucket .rate-chart line.limit")
    assert "not paused" in el(operator, ".bucket .pause").text
    [bucket] = operator.api("GET", "/v1/fleet").json()["buckets"]
    counted = sum(minute["requests"] for minute in bucket["used"])  # every call of the batch took a counted slot
    assert counted >= sum(n for route, n in calls.items() if not route.startswith("POST /oauth")) > 0
