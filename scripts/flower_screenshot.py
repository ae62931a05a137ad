"""Screenshots of Flower during and after a batch, for docs/operations.md: ``.venv/bin/python
scripts/flower_screenshot.py`` (needs Debian's ``chromium`` and ``chromium-driver`` and the ``selenium`` package,
which scripts/bootstrap installs with the dev extra).

Starts what the demo starts, on loopback (a private Redis, the emulator, two workers, Flower with basic auth),
closes a small batch with analytics lagging 6 s so its items visibly wait for the batched reads, and takes
``docs/img/flower-batch-waiting.png`` once most items wait for their confirmation, and ``docs/img/flower-batch.png``
once every conversation's last task shows its outcome. Headless Chromium sends the basic-auth header itself
(DevTools), so no password is typed or put in a URL.
"""

from __future__ import annotations

import argparse
import ast
import base64
import shutil
import sys
import tempfile
import time
from collections.abc import Callable
from contextlib import ExitStack
from pathlib import Path
from typing import Any

import requests

from genesys_closer.config import load_producer_settings
from genesys_closer.emulator.stack import EmulatorProcess, FlowerProcess, RedisServer, closer_env, start_workers
from genesys_closer.producer.api import CloseClient
from genesys_closer.shared.names import TASK_NAME

REPO = Path(__file__).resolve().parent.parent
CHROMEDRIVER = shutil.which("chromedriver") or "/usr/bin/chromedriver"


def wait_for(predicate: Callable[[], object], timeout: float, what: str) -> None:
    deadline = time.monotonic() + timeout
    while not predicate():
        if time.monotonic() > deadline:
            raise TimeoutError(f"{what}: not within {timeout:g} s")
        time.sleep(0.2)


def browser(width: int, height: int, user: str, password: str) -> Any:
    from selenium import webdriver
    from selenium.webdriver.chrome.service import Service

    options = webdriver.ChromeOptions()
    for argument in ("--headless=new", "--no-sandbox", "--disable-dev-shm-usage", "--disable-gpu",
                     f"--window-size={width},{height}", "--hide-scrollbars"):
        options.add_argument(argument)
    driver = webdriver.Chrome(options=options, service=Service(executable_path=CHROMEDRIVER))
    token = base64.b64encode(f"{user}:{password}".encode()).decode()
    driver.execute_cdp_cmd("Network.enable", {})
    driver.execute_cdp_cmd("Network.setExtraHTTPHeaders", {"headers": {"Authorization": f"Basic {token}"}})
    return driver


def main() -> int:
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--conversations", type=int, default=40)
    parser.add_argument("--out", type=Path, default=REPO / "docs" / "img")
    args = parser.parse_args()
    workdir = Path(tempfile.mkdtemp(prefix="genesys-closer-flower-shot-"))
    with ExitStack() as stack:
        stack.callback(shutil.rmtree, workdir, True)
        redis_server = RedisServer(workdir / "redis").start()
        stack.callback(redis_server.stop)
        emulator = EmulatorProcess(["--conversations", "0", "--seed", "3"], workdir / "logs").start()
        stack.callback(emulator.stop)
        admin = emulator.admin
        admin.faults(analytics_lag_ms=6000)
        env = closer_env(redis_server.url, emulator.base_url, GENESYS_RATE_LIMIT_PER_MINUTE=3000,
                         BATCHED_GATHER_SECONDS=1)
        for worker in start_workers(2, env, workdir / "logs", concurrency=4):
            stack.callback(worker.stop)
        flower = FlowerProcess(env, workdir / "logs").start()  # its task list as compose configures it
        stack.callback(flower.stop)
        auth = (flower.user, flower.password)
        wait_for(lambda: len(requests.get(f"{flower.url}/api/workers", params={"refresh": "1"}, auth=auth,
                                          timeout=10).json()) >= 2, 60, "Flower sees both workers")
        driver = browser(1600, 1100, *auth)
        stack.callback(driver.quit)

        ids = admin.create(args.conversations)
        client = CloseClient(load_producer_settings(redis_url=redis_server.url))
        batch = client.close_many(ids, label="flower screenshot")

        def close_tasks() -> list[dict[str, Any]]:
            tasks = requests.get(f"{flower.url}/api/tasks", auth=auth, timeout=10).json().values()
            return [t for t in tasks if t.get("name") == TASK_NAME]

        def shows_confirm_waits() -> bool:
            """No close runs or waits in the broker, and most items wait for their batched confirmation."""
            latest: dict[str, dict[str, Any]] = {}
            for task in sorted(close_tasks(), key=lambda t: t.get("received") or 0.0):
                latest[ast.literal_eval(task["args"])[0]] = task
            states = [(t.get("state"), "confirm" in (t.get("result") or "")) for t in latest.values()]
            return (len(latest) == len(ids) and all(state in {"WAITING", "SUCCESS"} for state, _ in states)
                    and sum(state == "WAITING" and confirm for state, confirm in states) >= len(ids) // 2)

        wait_for(shows_confirm_waits, 120, "items waiting for the batched confirmation")
        shoot(driver, f"{flower.url}/tasks", args.out / "flower-batch-waiting.png")
        batch.wait(timeout=300)

        def last_tasks_succeeded() -> bool:
            last: dict[str, dict[str, Any]] = {}
            for task in sorted(close_tasks(), key=lambda t: t.get("received") or 0.0):
                last[ast.literal_eval(task["args"])[0]] = task
            return len(last) == len(ids) and all(t.get("state") == "SUCCESS" for t in last.values())

        wait_for(last_tasks_succeeded, 60, "every conversation's last task shows its outcome")
        shoot(driver, f"{flower.url}/tasks", args.out / "flower-batch.png")
        print(f"wrote {args.out / 'flower-batch-waiting.png'} and {args.out / 'flower-batch.png'}")
    return 0


def shoot(driver: Any, url: str, path: Path) -> None:
    from selenium.webdriver.common.by import By
    from selenium.webdriver.support import expected_conditions as ec
    from selenium.webdriver.support.ui import WebDriverWait

    driver.get(url)
    driver.execute_script("document.body.style.zoom = '0.8'")
    WebDriverWait(driver, 30).until(ec.presence_of_element_located((By.CSS_SELECTOR, "#tasks-table tbody tr td")))
    time.sleep(0.5)  # the table's last redraw after its data arrived (a screenshot, not a test)
    path.parent.mkdir(parents=True, exist_ok=True)
    driver.save_screenshot(str(path))


if __name__ == "__main__":
    sys.exit(main())
