"""The console with orgs (the shared fleet serves ``default``, ``org-a`` and ``org-b``): a login acts for the orgs
its credential is granted, the Batches page shows an org column and links each batch with its org, and another
org's batch is answered as one that does not exist, in the pages and in the API routes they call."""

from __future__ import annotations

import secrets
from collections.abc import Iterator

import pytest
import requests
from selenium.webdriver.common.by import By
from selenium.webdriver.remote.webdriver import WebDriver
from selenium.webdriver.support import expected_conditions as ec
from selenium.webdriver.support.ui import WebDriverWait

from tests.conftest import Fleet
from tests.console.conftest import log_in
from tests.fleet.intake_server import Intake, running_intake
from tests.waiting import wait_until

TOKEN_A, TOKEN_AB = secrets.token_hex(16), secrets.token_hex(16)
GRANTS = f"{TOKEN_A}:org-a;{TOKEN_AB}:org-a,org-b"


@pytest.fixture(scope="module")
def org_intake(fleet: Fleet, tmp_path_factory: pytest.TempPathFactory) -> Iterator[Intake]:
    log = tmp_path_factory.mktemp("console-orgs") / "intake.log"
    with running_intake(fleet.redis_url, log, INTAKE_TOKENS=GRANTS, CONSOLE_LIVE_SECONDS=0.5) as server:
        yield server


def test_batches_of_several_orgs(org_intake: Intake, on_fleet: Fleet, driver: WebDriver) -> None:
    started = {}
    for org in ("org-a", "org-b"):
        ids = on_fleet.org_admin(org).create(3)
        answer = org_intake.call("POST", "/v1/batches", TOKEN_AB, params={"org": org},
                                 json={"conversationIds": ids, "label": f"from {org}"})
        assert answer.status_code == 202, answer.text
        started[org] = answer.json()["batchId"]
    for org, batch_id in started.items():
        wait_until(lambda o=org, b=batch_id: org_intake.call("GET", f"/v1/batches/{b}", TOKEN_AB,
                                                             params={"org": o}).json()["finished_at"], timeout=60)
    log_in(driver, org_intake.url, TOKEN_AB)
    driver.get(org_intake.url + "/ui/batches")
    wait = WebDriverWait(driver, 60, poll_frequency=0.2)
    wait.until(ec.presence_of_element_located((By.CSS_SELECTOR, "#batches[data-live='yes']")))
    shown = {row.get_attribute("data-batch"): row.find_element(By.CSS_SELECTOR, "td.org").text
             for row in driver.find_elements(By.CSS_SELECTOR, "#batches tbody tr[data-batch]")}
    assert shown == {started["org-a"]: "org-a", started["org-b"]: "org-b"}
    driver.find_element(By.CSS_SELECTOR, f"tr[data-batch='{started['org-b']}'] a").click()
    wait.until(ec.text_to_be_present_in_element((By.ID, "org"), "org-b"))
    wait.until(ec.text_to_be_present_in_element((By.ID, "done"), "3/3"))
    assert len(driver.find_elements(By.CSS_SELECTOR, "#items tbody tr")) == 3

    for page in ("/ui/new", "/ui/sweep", "/ui/readiness", "/ui/fleet"):  # the nav's links name no org
        driver.get(org_intake.url + page)
        wait.until(ec.presence_of_element_located((By.ID, "logout")))
        assert "org-a" in driver.find_element(By.TAG_NAME, "main").text  # its first org, with the others to choose
    driver.get(org_intake.url + "/ui/sweep?org=org-b")
    wait.until(ec.presence_of_element_located((By.CSS_SELECTOR, "#org option[value='org-b'][selected]")))

    checked = org_intake.call("GET", "/v1/readiness", TOKEN_AB, params={"org": "org-b"}).json()
    assert checked["org"] == "org-b" and checked["checks"] and "error" not in checked  # run with org-b's settings
    assert org_intake.call("GET", "/v1/readiness", TOKEN_A, params={"org": "org-b"}).status_code == 404

    log_in(driver, org_intake.url, TOKEN_A)  # granted org-a only: org-b's batch does not exist for it
    driver.get(f"{org_intake.url}/ui/batches/{started['org-b']}?org=org-b")
    wait.until(ec.text_to_be_present_in_element((By.TAG_NAME, "h1"), "No such batch"))
    for page in ("/ui/new", "/ui/sweep", "/ui/readiness", "/ui/fleet"):  # another org's page: a page saying so
        driver.get(f"{org_intake.url}{page}?org=org-b")
        wait.until(ec.text_to_be_present_in_element((By.TAG_NAME, "h1"), "No such org"))
    cookie = {"gc_console": str(driver.get_cookie("gc_console")["value"])}  # type: ignore[index]
    items = requests.get(f"{org_intake.url}/v1/batches/{started['org-b']}/items", params={"org": "org-b"},
                         cookies=cookie, timeout=10)
    assert items.status_code == 404
    listed = requests.get(f"{org_intake.url}/v1/batches", cookies=cookie, timeout=10).json()["batches"]
    assert [b["batch_id"] for b in listed] == [started["org-a"]]
    driver.get("about:blank")


def test_a_login_of_one_org_cannot_act_on_another_orgs_batch(org_intake: Intake, on_fleet: Fleet) -> None:
    """Every route the pages call, with org-a's console session, on an org-b batch that is still running: named with
    its org, without, or under org-a; each answers as for a batch that does not exist, and nothing happens to it."""
    ids = on_fleet.org_admin("org-b").create(2, "stuck")
    answer = org_intake.call("POST", "/v1/batches", TOKEN_AB, params={"org": "org-b"},
                             json={"conversationIds": ids, "label": "org-b's"})
    assert answer.status_code == 202, answer.text
    batch_id = answer.json()["batchId"]
    session = requests.Session()
    form = session.get(org_intake.url + "/ui/login", timeout=10).text
    csrf = form.split('name="csrf" value="', 1)[1].split('"', 1)[0]
    assert session.post(org_intake.url + "/ui/login", data={"csrf": csrf, "token": TOKEN_A}, allow_redirects=False,
                        timeout=10).status_code == 303
    page = session.get(org_intake.url + "/ui/batches", timeout=10).text
    session.headers["X-CSRF-Token"] = page.split('name="csrf-token" content="', 1)[1].split('"', 1)[0]
    base = f"{org_intake.url}/v1/batches/{batch_id}"
    routes = (("GET", base, None), ("GET", f"{base}/items", None), ("GET", f"{base}/results?format=csv", None),
              ("GET", f"{base}/events", None), ("POST", f"{base}/cancel", None),
              ("POST", f"{base}/retry", {"outcomes": ["failed"]}))
    for org in ({"org": "org-b"}, {}, {"org": "org-a"}):
        for method, url, body in routes:
            shown = session.request(method, url, params=org, json=body, timeout=10)
            assert shown.status_code == 404, (method, url, org, shown.status_code, shown.text[:200])
        page = session.get(f"{org_intake.url}/ui/batches/{batch_id}", params=org, timeout=10)
        assert page.status_code == 404 and "org-b's" not in page.text
    status = org_intake.call("GET", f"/v1/batches/{batch_id}", TOKEN_AB, params={"org": "org-b"}).json()
    assert status["reason"] == "" and status["state"] != "cancelled"  # untouched by org-a's cancel
    assert len(org_intake.call("GET", "/v1/batches", TOKEN_AB).json()["batches"]) == 1  # nor retried
    cancelled = org_intake.call("POST", f"/v1/batches/{batch_id}/cancel", TOKEN_AB, params={"org": "org-b"}).json()
    assert cancelled["reason"] == "cancelled by operator", cancelled  # its own org's cancel works
