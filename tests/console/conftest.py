"""The console in a real headless Chromium (Debian's ``chromium`` + ``chromium-driver``, driven by selenium) against a
real ``genesys-closer serve`` on the shared fleet (real Redis, workers and emulator).

One browser for the whole module's tests (starting Chromium is the slow part); each test gets the fleet reset (which
also ends every console session) and logs in again, as an operator would.
"""

from __future__ import annotations

import contextlib
import shutil
from collections.abc import Iterator
from dataclasses import dataclass
from pathlib import Path

import pytest
import redis
import requests
from selenium import webdriver
from selenium.common.exceptions import NoAlertPresentException, TimeoutException
from selenium.webdriver.chrome.service import Service
from selenium.webdriver.common.alert import Alert
from selenium.webdriver.common.by import By
from selenium.webdriver.remote.webdriver import WebDriver
from selenium.webdriver.support import expected_conditions as ec
from selenium.webdriver.support.ui import WebDriverWait

from genesys_closer.emulator.admin import EmulatorAdmin
from genesys_closer.shared.redis_connection import connect
from tests.conftest import Fleet
from tests.fleet.intake_server import TOKEN_A, Intake, running_intake

CHROMIUM = shutil.which("chromium") or "/usr/bin/chromium"
CHROMEDRIVER = shutil.which("chromedriver") or "/usr/bin/chromedriver"
WAIT_SECONDS = 90  # the longest a page condition is waited for (a batch of a few dozen closes ends well within it)


def browser(downloads: Path, width: int = 1280, height: int = 900) -> WebDriver:
    if not Path(CHROMIUM).exists() or not Path(CHROMEDRIVER).exists():
        pytest.fail("chromium and chromium-driver are not installed: run scripts/bootstrap")
    options = webdriver.ChromeOptions()
    options.binary_location = CHROMIUM
    for argument in ("--headless=new", "--no-sandbox", "--disable-dev-shm-usage", "--disable-gpu",
                     f"--window-size={width},{height}", "--disable-extensions", "--no-first-run"):
        options.add_argument(argument)
    options.add_experimental_option("prefs", {"download.default_directory": str(downloads),
                                              "download.prompt_for_download": False})
    return webdriver.Chrome(options=options, service=Service(executable_path=CHROMEDRIVER))


# One console intake and one browser per test process (session scope): tests/scheduling.py runs the console's browser
# modules in one process, so the suite starts Chromium and the console intake once.
@pytest.fixture(scope="session")
def console_intake(fleet: Fleet, tmp_path_factory: pytest.TempPathFactory) -> Iterator[Intake]:
    log = tmp_path_factory.mktemp("console-intake") / "intake.log"
    with running_intake(fleet.redis_url, log, CONSOLE_LIVE_SECONDS=0.5, BATCH_IN_FLIGHT=8) as server:
        yield server


@pytest.fixture(scope="session")
def driver(tmp_path_factory: pytest.TempPathFactory) -> Iterator[WebDriver]:
    downloads = tmp_path_factory.mktemp("downloads")
    chrome = browser(downloads)
    chrome.downloads = downloads  # type: ignore[attr-defined]
    try:
        yield chrome
    finally:
        chrome.quit()


@dataclass
class Operator:
    """The browser, logged in to the console, and what a test needs beside it."""

    driver: WebDriver
    intake: Intake
    admin: EmulatorAdmin
    fleet: Fleet

    @property
    def url(self) -> str:
        return self.intake.url

    def open(self, path: str) -> None:
        """Load a page and wait until its module has set up its handlers (``body[data-ready]``, app.js)."""
        self.driver.get(self.url + path)
        if self.driver.current_url.startswith(self.url + "/ui/") and "/ui/login" not in self.driver.current_url:
            self.ready()

    def ready(self) -> None:
        """Until the page shown (opened, or reached by the page itself) has its module's handlers in place."""
        self.wait(lambda driver: not driver.find_element(By.TAG_NAME, "body").get_attribute("data-page")
                  or driver.find_element(By.TAG_NAME, "body").get_attribute("data-ready") == "true")

    def wait(self, condition: object, timeout: float = WAIT_SECONDS) -> object:
        try:
            return WebDriverWait(self.driver, timeout, poll_frequency=0.2).until(condition)  # type: ignore[arg-type]
        except TimeoutException:
            shown = self.driver.find_element(By.TAG_NAME, "body").text[:3000]
            raise TimeoutException(f"not reached on {self.driver.current_url}; the page shows:\n{shown}") from None

    def alert(self, timeout: float = WAIT_SECONDS) -> Alert:
        """The page's dialog (a confirm() opened by a click handler), once it is open."""
        return self.wait(ec.alert_is_present(), timeout)  # type: ignore[return-value]

    def text_in(self, css: str, text: str, timeout: float = WAIT_SECONDS) -> None:
        self.wait(ec.text_to_be_present_in_element((By.CSS_SELECTOR, css), text), timeout)

    def find(self, css: str) -> object:
        return self.driver.find_element(By.CSS_SELECTOR, css)

    def session_cookie(self) -> str:
        cookie = self.driver.get_cookie("gc_console")
        assert cookie is not None
        return str(cookie["value"])

    def api(self, method: str, path: str, **kwargs: object) -> requests.Response:
        return self.intake.call(method, path, **kwargs)

    def fleet_redis(self) -> redis.Redis:
        return connect(self.fleet.redis_url)

    intake_token = TOKEN_A


def log_in(driver: WebDriver, url: str, token: str = TOKEN_A) -> None:
    driver.delete_all_cookies()
    driver.get(url + "/ui/login")
    driver.find_element(By.ID, "token").send_keys(token)
    driver.find_element(By.ID, "login").click()
    WebDriverWait(driver, 30).until(ec.presence_of_element_located((By.ID, "logout")))


@pytest.fixture
def operator(on_fleet: Fleet, console_intake: Intake, driver: WebDriver) -> Iterator[Operator]:
    log_in(driver, console_intake.url)
    yield Operator(driver, console_intake, on_fleet.admin, on_fleet)
    with contextlib.suppress(NoAlertPresentException):  # a dialog a failed test left open blocks the next test
        driver.switch_to.alert.dismiss()
    driver.get("about:blank")  # a page's live streams end with it
