"""The console attacked the way a web app is: hostile labels (XSS), requests forged from another page (CSRF), a
session that must end at logout, and the headers that forbid inline script. Real browser, real intake and fleet."""

from __future__ import annotations

import contextlib
import threading
import uuid
from collections.abc import Iterator
from http.server import BaseHTTPRequestHandler, ThreadingHTTPServer
from pathlib import Path

import pytest
import requests
from selenium.common.exceptions import NoAlertPresentException
from selenium.webdriver.common.by import By
from selenium.webdriver.support import expected_conditions as ec

from genesys_closer.config.redis_keys import KEYS
from genesys_closer.shared.redis_connection import connect
from tests.conftest import Fleet
from tests.console.conftest import Operator
from tests.fleet.intake_server import TOKEN_A, TOKEN_B, Intake, running_intake
from tests.waiting import wait_until

HOSTILE = "<img src=x onerror=alert(1)>"


def no_alert(operator: Operator) -> bool:
    try:
        operator.driver.switch_to.alert.dismiss()
    except NoAlertPresentException:
        return True
    return False


def finished(operator: Operator, batch_id: str) -> bool:
    return operator.api("GET", f"/v1/batches/{batch_id}").json()["finished_at"] is not None


def test_a_hostile_label_is_shown_as_text_and_runs_nothing(operator: Operator) -> None:
    ids = operator.admin.create(3)
    started = operator.api("POST", "/v1/batches", json={"conversationIds": [*ids, HOSTILE], "label": HOSTILE})
    assert started.status_code == 202, started.text
    batch_id = started.json()["batchId"]
    operator.open("/ui/batches")
    operator.wait(ec.presence_of_element_located((By.CSS_SELECTOR, "#batches[data-live='yes']")))  # the live rows
    operator.text_in(f"tr[data-batch='{batch_id}'] td.label", HOSTILE)
    wait_until(lambda: finished(operator, batch_id), timeout=60)
    operator.open(f"/ui/batches/{batch_id}")
    operator.text_in("#label", HOSTILE)
    operator.text_in("#items", HOSTILE)  # the invalid line is an item too: its id is hostile text as well
    for page in ("/ui/batches", f"/ui/batches/{batch_id}"):
        operator.open(page)
        operator.wait(ec.presence_of_element_located((By.ID, "logout")))
        assert no_alert(operator)
        assert operator.driver.execute_script("return document.querySelectorAll('img').length") == 0
    headers = requests.get(operator.url + "/ui/batches", cookies={"gc_console": operator.session_cookie()},
                           timeout=10).headers
    policy = headers["Content-Security-Policy"]
    assert "script-src 'self'" in policy and "unsafe-inline" not in policy and "frame-ancestors 'none'" in policy


@contextlib.contextmanager
def attacker_page(target: str, field: str) -> Iterator[str]:
    """A page on another loopback port (the same site, another origin) that posts a form to the console at once:
    ``enctype=text/plain`` makes its body an id list the intake would take."""
    page = (f"<form id=f method=post enctype=text/plain action='{target}'><input name='{field}' value=''></form>"
            "<script>document.getElementById('f').submit()</script>").encode()

    class Handler(BaseHTTPRequestHandler):
        def do_GET(self) -> None:
            self.send_response(200)
            self.send_header("Content-Type", "text/html")
            self.end_headers()
            self.wfile.write(page)

        def log_message(self, *args: object) -> None:
            return

    server = ThreadingHTTPServer(("127.0.0.1", 0), Handler)
    thread = threading.Thread(target=server.serve_forever, daemon=True)
    thread.start()
    try:
        yield f"http://127.0.0.1:{server.server_address[1]}/"
    finally:
        server.shutdown()
        server.server_close()


def batch_count(operator: Operator) -> int:
    """Batches in Redis (the API's list is a shared read, up to CONSOLE_LIVE_SECONDS old)."""
    return int(operator.fleet_redis().zcard(KEYS.batches))


def test_state_changes_need_the_csrf_token(operator: Operator) -> None:
    [target] = operator.admin.create(1)
    create = f"{operator.url}/v1/batches"
    with attacker_page(create, target) as evil:  # a forged upload from another page the operator has open
        operator.driver.get(evil)
        operator.wait(lambda d: d.current_url.startswith(operator.url))
    assert '"csrf"' in operator.driver.page_source
    cookie = {"gc_console": operator.session_cookie()}
    body = {"conversationIds": [target]}
    assert requests.post(create, json=body, cookies=cookie, timeout=10).status_code == 403  # the cookie alone
    assert requests.post(create, json=body, cookies=cookie, headers={"X-CSRF-Token": "guess"},
                         timeout=10).status_code == 403
    operator.open("/ui/batches")
    script = ("const done = arguments[arguments.length - 1];"
              "const headers = {'Content-Type': 'application/json'};"
              "if (arguments[1]) headers['X-CSRF-Token'] = document.querySelector('meta[name=csrf-token]').content;"
              "fetch('/v1/batches', {method: 'POST', headers, body: JSON.stringify({conversationIds: [arguments[0]]})})"
              ".then(r => done(r.status), e => done(String(e)));")
    assert operator.driver.execute_async_script(script, target, False) == 403  # the console's origin, no token
    assert batch_count(operator) == 0 and operator.admin.conversation(target)["open"]
    assert operator.driver.execute_async_script(script, target, True) == 202  # the page's own token: accepted
    wait_until(lambda: not operator.admin.conversation(target)["open"], timeout=60)
    assert batch_count(operator) == 1


def test_logout_ends_the_session_everywhere(operator: Operator) -> None:
    cookie = operator.session_cookie()
    assert requests.get(operator.url + "/v1/batches", cookies={"gc_console": cookie}, timeout=10).status_code == 200
    operator.open("/ui/batches")
    operator.find("#logout").click()  # type: ignore[attr-defined]
    operator.wait(ec.presence_of_element_located((By.ID, "login")))
    assert operator.driver.get_cookie("gc_console") is None
    # The old cookie value, replayed: the server revoked the session, it is worth nothing.
    assert requests.get(operator.url + "/v1/batches", cookies={"gc_console": cookie}, timeout=10).status_code == 401
    replayed = requests.get(operator.url + "/ui/batches", cookies={"gc_console": cookie}, allow_redirects=False,
                            timeout=10)
    assert replayed.status_code == 303 and replayed.headers["location"] == "/ui/login"
    assert not list(operator.fleet_redis().scan_iter(KEYS.console_session("*")))


def test_login_refuses_a_wrong_credential_and_sets_a_strict_cookie(operator: Operator) -> None:
    operator.driver.delete_all_cookies()
    operator.open("/ui/login")
    operator.find("#token").send_keys("not-a-token-of-this-intake")  # type: ignore[attr-defined]
    operator.find("#login").click()  # type: ignore[attr-defined]
    operator.text_in("#login-error", "not one of the intake's")
    assert operator.driver.get_cookie("gc_console") is None
    login = requests.Session()
    form = login.get(operator.url + "/ui/login", timeout=10)
    csrf = form.text.split('name="csrf" value="', 1)[1].split('"', 1)[0]
    answer = login.post(operator.url + "/ui/login", data={"csrf": csrf, "token": operator.intake_token},
                        allow_redirects=False, timeout=10)
    assert answer.status_code == 303
    header = answer.headers["set-cookie"].lower()
    assert "httponly" in header and "samesite=strict" in header
    assert "secure" not in header  # plain HTTP on loopback only; anywhere else the cookie is Secure


@pytest.mark.parametrize("host", ["closer.example.com"])
def test_the_cookie_is_secure_off_loopback(operator: Operator, host: str) -> None:
    login = requests.Session()
    form = login.get(operator.url + "/ui/login", headers={"Host": host}, timeout=10)
    assert "secure" in form.headers["set-cookie"].lower()


def console_login(url: str, token: str) -> requests.Session:
    """A console session, logged in through the login form as a browser would."""
    login = requests.Session()
    form = login.get(url + "/ui/login", timeout=10)
    csrf = form.text.split('name="csrf" value="', 1)[1].split('"', 1)[0]
    answer = login.post(url + "/ui/login", data={"csrf": csrf, "token": token}, allow_redirects=False, timeout=10)
    assert answer.status_code == 303, answer.text
    return login


def test_a_session_ends_with_its_credential(console_intake: Intake, on_fleet: Fleet, tmp_path: Path) -> None:
    """A token taken out of INTAKE_TOKENS (rotated after a leak) takes its console sessions with it: the intake
    restarted without it refuses the cookie (and deletes the session), a session of a kept token still works."""
    dropped, kept = console_login(console_intake.url, TOKEN_A), console_login(console_intake.url, TOKEN_B)
    with running_intake(on_fleet.redis_url, tmp_path / "rotated.log", INTAKE_TOKENS=TOKEN_B) as rotated:
        assert dropped.get(rotated.url + "/v1/batches", timeout=10).status_code == 401
        page = dropped.get(rotated.url + "/ui/batches", allow_redirects=False, timeout=10)
        assert page.status_code == 303 and page.headers["location"] == "/ui/login"
        assert kept.get(rotated.url + "/v1/batches", timeout=10).status_code == 200
    assert dropped.get(console_intake.url + "/v1/batches", timeout=10).status_code == 401  # deleted, not only refused


def test_every_answer_has_its_headers(console_intake: Intake, on_fleet: Fleet) -> None:
    """Pages, static files and error pages under /ui get the strict policy; the /v1 data the pages read (a batch
    list, an export, an error) is never kept in a browser's cache either."""
    session = console_login(console_intake.url, TOKEN_A)
    for path in ("/ui/login", "/ui/batches", "/ui/static/app.js", "/ui/no-such-page", "/ui/static/../intake.py"):
        headers = session.get(console_intake.url + path, timeout=10).headers
        assert headers["Content-Security-Policy"].startswith("default-src 'none'"), path
        assert headers["Cache-Control"] == "no-store" and headers["X-Frame-Options"] == "DENY", path
    batch = console_intake.call("POST", "/v1/batches", json={"conversationIds": [str(uuid.uuid4())]}).json()
    for path in ("/v1/batches", f"/v1/batches/{batch['batchId']}/results?format=csv", "/v1/batches/none"):
        headers = session.get(console_intake.url + path, timeout=10).headers
        assert headers["Cache-Control"] == "no-store" and headers["X-Content-Type-Options"] == "nosniff", path
    assert requests.get(console_intake.url + "/v1/batches", timeout=10).headers["Cache-Control"] == "no-store"


def test_a_login_posted_from_another_origin_logs_no_one_in(console_intake: Intake, on_fleet: Fleet) -> None:
    """A page on a sibling port can plant the login form's double-submit cookie; its Origin still gives it away."""
    forged = requests.post(console_intake.url + "/ui/login", data={"csrf": "planted", "token": TOKEN_A},
                           cookies={"gc_console_login": "planted"}, headers={"Origin": "http://127.0.0.1:1"},
                           allow_redirects=False, timeout=10)
    assert forged.status_code == 200 and "gc_console=" not in forged.headers.get("set-cookie", "")
    assert not list(connect(on_fleet.redis_url).scan_iter(KEYS.console_session("*")))
