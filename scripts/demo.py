"""Interim demo: the emulator plus the close algorithm, closing a few conversations with a progress bar."""

from __future__ import annotations

import sys
import time
from pathlib import Path

sys.path.insert(0, str(Path(__file__).resolve().parent.parent))

from rich.console import Console
from rich.progress import BarColumn, MofNCompleteColumn, Progress, TextColumn, TimeElapsedColumn

from config import load_settings
from emulator import EmulatorConfig, start_in_thread
from emulator.admin import EmulatorAdmin
from worker.factory import build_service


def main() -> int:
    console = Console()
    server = start_in_thread(config=EmulatorConfig(rate_limit_per_minute=300, seed=1))
    admin = EmulatorAdmin(server.base_url)
    ids = admin.create(20, "webmessaging") + admin.create(3, "disconnected") + admin.create(2, "sms")
    settings = load_settings(genesys_client_id="demo-client", genesys_client_secret="demo-secret",
                             genesys_api_url=server.base_url, genesys_login_url=server.base_url)
    service = build_service(settings)
    counts: dict[str, int] = {}
    started = time.monotonic()
    console.print(f"Emulator at {server.base_url}: closing {len(ids)} conversations")
    with Progress(TextColumn("closing"), BarColumn(), MofNCompleteColumn(), TimeElapsedColumn(),
                  console=console) as progress:
        task = progress.add_task("close", total=len(ids))
        for cid in ids:
            result = service.closer.close(cid, service.default_options)
            counts[result.outcome.value] = counts.get(result.outcome.value, 0) + 1
            progress.advance(task)
    stats = admin.stats()
    console.print(f"outcomes: {counts}")
    console.print(f"API requests: {stats['requests_total']} in {time.monotonic() - started:.1f} s; "
                  f"open web messaging conversations left: {stats['conversations_open']}")
    server.stop()
    return 0


if __name__ == "__main__":
    sys.exit(main())
