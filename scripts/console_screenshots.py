"""Screenshots of every console page for docs/console.md: the demo's stack (a private Redis, the emulator, two workers,
``genesys-closer serve``), a few batches like an incident's, then Debian's headless Chromium (the browser tests' own)
visits each page. PNGs go to docs/console/, reduced to a 64-colour palette to stay small.

    .venv/bin/python scripts/console_screenshots.py            # needs chromium and chromium-driver (scripts/bootstrap)
"""

from __future__ import annotations

import shutil
import tempfile
from contextlib import ExitStack
from pathlib import Path

from PIL import Image
from selenium import webdriver
from selenium.webdriver.chrome.service import Service
from selenium.webdriver.common.by import By
from selenium.webdriver.remote.webdriver import WebDriver
from selenium.webdriver.support import expected_conditions as ec
from selenium.webdriver.support.ui import WebDriverWait

from genesys_closer.config import load_producer_settings
from genesys_closer.emulator.stack import (
    EmulatorProcess,
    IntakeProcess,
    RedisServer,
    closer_env,
    start_workers,
)
from genesys_closer.producer.api import CloseClient

REPO = Path(__file__).resolve().parent.parent
OUT = REPO / "docs" / "console"
LIMIT = 3000
MAX_HEIGHT = 2000


def browser(width: int, height: int, phone: bool = False) -> WebDriver:
    options = webdriver.ChromeOptions()
    if phone:  # a phone's viewport (a desktop window cannot be made that narrow)
        options.add_experimental_option("mobileEmulation", {"deviceMetrics": {"width": width, "height": height,
                                                                              "pixelRatio": 1}})
    options.binary_location = shutil.which("chromium") or "/usr/bin/chromium"
    for argument in ("--headless=new", "--no-sandbox", "--disable-dev-shm-usage", "--disable-gpu",
                     f"--window-size={width},{height}", "--hide-scrollbars", "--force-device-scale-factor=1"):
        options.add_argument(argument)
    return webdriver.Chrome(options=options,
                            service=Service(executable_path=shutil.which("chromedriver") or "/usr/bin/chromedriver"))


def save(driver: WebDriver, name: str) -> None:
    """The page from its top, as tall as its content (at most MAX_HEIGHT)."""
    if not name.endswith("-phone"):  # a phone keeps its own viewport
        width = driver.get_window_size()["width"]
        height = driver.execute_script("return document.documentElement.scrollHeight")
        driver.set_window_size(width, min(int(height) + 90, MAX_HEIGHT))
    driver.execute_script("window.scrollTo(0, 0); document.activeElement.blur()")
    raw = OUT / f"{name}.raw.png"
    driver.save_screenshot(str(raw))
    with Image.open(raw) as image:
        image.convert("RGB").quantize(colors=64).save(OUT / f"{name}.png", optimize=True)
    raw.unlink()
    print(f"docs/console/{name}.png")


def wait_for(driver: WebDriver, css: str, text: str = "", timeout: float = 120) -> None:
    located = (By.CSS_SELECTOR, css)
    condition = ec.text_to_be_present_in_element(located, text) if text else ec.presence_of_element_located(located)
    WebDriverWait(driver, timeout, poll_frequency=0.2).until(condition)


def log_in(driver: WebDriver, url: str, token: str) -> None:
    driver.get(url + "/ui/login")
    driver.find_element(By.ID, "token").send_keys(token)
    driver.find_element(By.ID, "login").click()
    wait_for(driver, "#logout")


def main() -> None:
    OUT.mkdir(parents=True, exist_ok=True)
    workdir = Path(tempfile.mkdtemp(prefix="console-shots-"))
    with ExitStack() as stack:
        stack.callback(shutil.rmtree, workdir, True)
        redis_server = RedisServer(workdir / "redis").start()
        stack.callback(redis_server.stop)
        (workdir / "logs").mkdir()
        emulator = EmulatorProcess(["--conversations", "1200", "--rate-limit-per-minute", str(LIMIT), "--seed", "7"],
                                   workdir / "logs").start()
        stack.callback(emulator.stop)
        env = closer_env(redis_server.url, emulator.base_url, GENESYS_RATE_LIMIT_PER_MINUTE=LIMIT,
                         CONFIRM_TIMEOUT_SECONDS=5, CONFIRM_ANALYTICS_TIMEOUT_SECONDS=6)
        for worker in start_workers(2, env, workdir / "logs", concurrency=8):
            stack.callback(worker.stop)
        intake = IntakeProcess(env, workdir / "logs").start()
        stack.callback(intake.stop)
        admin = emulator.admin
        client = CloseClient(load_producer_settings(redis_url=redis_server.url))

        first = client.close_many([c["id"] for c in admin.conversations(open="true")], label="outage 2026-11-20",
                                  source="stuck-sessions.csv")
        first.wait(timeout=300)
        mixed = admin.create(40) + admin.create(3, "stuck") + admin.create(2, "restricted")
        troubled = client.close_many([*mixed, "not-a-conversation-id"], label="crm export, week 47",
                                     source="crm-export.csv")
        troubled.wait(timeout=300)
        running = client.close_many(admin.create(400, "stuck"), label="load test leftovers", source="http intake")
        for kind, count, age in (("webmessaging", 12, 180), ("parked", 3, 180), ("bot", 2, 180),
                                 ("stuck", 2, 180), ("webmessaging", 3, 20)):
            admin.create(count, kind, age_minutes=age)

        driver = browser(1280, 900)
        stack.callback(driver.quit)
        driver.get(intake.url + "/ui/login")
        wait_for(driver, "#login")
        save(driver, "login")
        log_in(driver, intake.url, intake.token)
        driver.get(intake.url + "/ui/batches")
        wait_for(driver, "#batches[data-live='yes']")
        wait_for(driver, f"tr[data-batch='{running.id}'] td.eta", "m")  # progress samples: closes/min and ETA
        save(driver, "batches")

        driver.get(f"{intake.url}/ui/batches/{troubled.id}")
        wait_for(driver, "#items tbody tr")
        driver.find_element(By.CSS_SELECTOR, "#filter-outcome option[value='unconfirmed']").click()
        driver.find_element(By.ID, "apply-filter").click()
        wait_for(driver, "#items tbody", "unconfirmed")
        save(driver, "batch")

        driver.get(intake.url + "/ui/new")
        ids = admin.create(5)
        driver.find_element(By.ID, "new-label").send_keys("from the CRM")
        driver.find_element(By.ID, "ids").send_keys("\n".join([ids[0], ids[1], "3b47a74f-not-a-uuid", *ids[2:]]))
        driver.find_element(By.ID, "dry-run").click()
        wait_for(driver, "#dry-summary", "valid")
        save(driver, "new-batch")

        driver.get(intake.url + "/ui/sweep")
        driver.find_element(By.ID, "preview").click()
        wait_for(driver, "#sweep-summary", "chosen")
        count = driver.find_element(By.ID, "chosen-count").text
        driver.find_element(By.ID, "confirm-count").send_keys(count)
        save(driver, "sweep")

        driver.get(intake.url + "/ui/readiness")
        wait_for(driver, "#ready-summary", "Checked")
        save(driver, "readiness")

        driver.get(intake.url + "/ui/fleet")
        wait_for(driver, "body[data-fleet='shown']")
        save(driver, "fleet")

        phone = browser(390, 1500, phone=True)  # a phone's width; tall enough to show the results
        stack.callback(phone.quit)
        log_in(phone, intake.url, intake.token)
        phone.get(f"{intake.url}/ui/batches/{troubled.id}")
        wait_for(phone, "#items tbody tr")
        save(phone, "batch-phone")
        driver.get("about:blank")
        phone.get("about:blank")


if __name__ == "__main__":
    main()
