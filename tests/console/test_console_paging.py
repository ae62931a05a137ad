"""A batch of 100,000 results in the console: pages come from the server, a bounded HSCAN step each, so the first
page, a filtered walk and a search cost the same whatever the batch's size; the browser shows one page at a time.
Its own intake on a Redis database of its own (the records are written straight into the store, as the workers
would have recorded them: no fleet needed)."""

from __future__ import annotations

import json
import uuid
from collections.abc import Iterator
from pathlib import Path

import pytest
from selenium.webdriver.common.by import By
from selenium.webdriver.remote.webdriver import WebDriver
from selenium.webdriver.support import expected_conditions as ec
from selenium.webdriver.support.ui import WebDriverWait

from genesys_closer.config.redis_keys import KEYS
from genesys_closer.producer.console.api import SCAN_COUNT, SCAN_STEPS_PER_PAGE
from genesys_closer.shared.outcomes import CloseResult, Outcome
from genesys_closer.shared.redis_connection import connect
from genesys_closer.shared.stores import ResultStores
from tests.console.conftest import log_in
from tests.fleet.intake_server import Intake, running_intake

ITEMS = 100_000
FAILED_EVERY = 100


@pytest.fixture
def big_batch(redis_url: str) -> tuple[str, set[str]]:
    client = connect(redis_url)
    batch_id = uuid.uuid4().hex
    ResultStores.open(client, 3600).batches.create(batch_id, label="100k")
    failed: set[str] = set()
    template = {o: json.dumps(CloseResult("ID", o).stored(in_batch=True)) for o in (Outcome.FAILED, Outcome.CLOSED)}
    pipe = client.pipeline(transaction=False)
    chunk: dict[str, str] = {}
    for n in range(ITEMS):
        cid = str(uuid.UUID(int=n + 1))
        outcome = Outcome.FAILED if n % FAILED_EVERY == 0 else Outcome.CLOSED
        if outcome is Outcome.FAILED:
            failed.add(cid)
        chunk[cid] = template[outcome].replace('"ID"', json.dumps(cid))
        if len(chunk) == 2000:
            pipe.hset(KEYS.batch_items(batch_id), mapping=chunk)
            chunk = {}
    pipe.execute()
    return batch_id, failed


@pytest.fixture
def paging_intake(redis_url: str, tmp_path: Path) -> Iterator[Intake]:
    with running_intake(redis_url, tmp_path / "intake.log") as server:
        yield server


def test_pages_of_a_100000_item_batch_are_bounded(paging_intake: Intake, big_batch: tuple[str, set[str]],
                                                   driver: WebDriver) -> None:
    batch_id, failed = big_batch
    items = f"/v1/batches/{batch_id}/items"
    first = paging_intake.call("GET", items, params={"limit": 50}).json()
    assert 0 < len(first["items"]) <= 2 * 50 and first["cursor"]  # about one page, and where to go on
    seen: set[str] = set()
    cursor, requests_made = 0, 0
    while True:  # the failures, page by page: each request looks at a bounded part of the hash
        page = paging_intake.call("GET", items, params={"outcome": "failed", "cursor": cursor, "limit": 200}).json()
        requests_made += 1
        seen |= {item["conversation_id"] for item in page["items"]}
        assert {item["outcome"] for item in page["items"]} <= {"failed"}
        if not page["cursor"]:
            break
        cursor = page["cursor"]
    assert seen == failed
    assert requests_made <= ITEMS // (SCAN_STEPS_PER_PAGE * SCAN_COUNT) + len(failed) // 200 + 2
    one = sorted(failed)[3]
    assert [i["conversation_id"] for i in paging_intake.call("GET", items, params={"q": one}).json()["items"]] == [one]

    log_in(driver, paging_intake.url)
    driver.get(f"{paging_intake.url}/ui/batches/{batch_id}")
    # The page's module attaches the buttons' handlers after the load event (body[data-ready]): a click on "next"
    # before it did nothing, and "page 2" never came (seen under -n 6).
    WebDriverWait(driver, 30).until(
        lambda d: d.find_element(By.TAG_NAME, "body").get_attribute("data-ready") == "true")
    shown = driver.find_elements(By.CSS_SELECTOR, "#items tbody tr")
    assert 0 < len(shown) <= 100  # one server page, not 100,000 rows
    driver.find_element(By.ID, "next").click()
    WebDriverWait(driver, 30).until(ec.text_to_be_present_in_element((By.ID, "page-no"), "page 2"))
    assert 0 < len(driver.find_elements(By.CSS_SELECTOR, "#items tbody tr")) <= 100
    driver.get("about:blank")  # the page's live stream ends with it (the intake stops next)
