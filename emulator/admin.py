"""A small client for the emulator's admin API (stdlib only), for tests, the demo and the benchmarks."""

from __future__ import annotations

import json
import time
import urllib.request
from typing import Any


class EmulatorAdmin:
    def __init__(self, base_url: str, timeout_seconds: float = 30.0) -> None:
        self.base_url = base_url.rstrip("/")
        self.timeout = timeout_seconds

    def _call(self, method: str, action: str, body: Any = None) -> Any:
        data = None if body is None else json.dumps(body).encode()
        request = urllib.request.Request(
            f"{self.base_url}/__emulator__/{action}", data=data, method=method,
            headers={"Content-Type": "application/json"})
        with urllib.request.urlopen(request, timeout=self.timeout) as response:
            return json.loads(response.read())

    def create(self, count: int, kind: str = "webmessaging", **extra: Any) -> list[str]:
        ids: list[str] = self._call("POST", "conversations", {"count": count, "kind": kind, **extra})["ids"]
        return ids

    def conversations(self, **filters: str) -> list[dict[str, Any]]:
        query = "&".join(f"{k}={v}" for k, v in filters.items())
        rows: list[dict[str, Any]] = self._call("GET", "conversations" + (f"?{query}" if query else ""))[
            "conversations"]
        return rows

    def conversation(self, conversation_id: str) -> dict[str, Any]:
        row: dict[str, Any] = self._call("GET", f"conversations/{conversation_id}")
        return row

    def stats(self) -> dict[str, Any]:
        stats: dict[str, Any] = self._call("GET", "stats")
        return stats

    def requests(self, since: int = 0) -> list[dict[str, Any]]:
        rows: list[dict[str, Any]] = self._call("GET", f"requests?since={since}")["requests"]
        return rows

    def reset(self, conversations: bool = False, faults: bool = False) -> None:
        """Clear the statistics and request log; with ``conversations`` every conversation, with ``faults`` every
        injected fault (back to a healthy emulator)."""
        self._call("POST", "reset", {"conversations": conversations, "faults": faults})

    def faults(self, **changes: Any) -> dict[str, Any]:
        view: dict[str, Any] = self._call("POST", "faults", changes)
        return view

    def revoke_tokens(self) -> int:
        return int(self._call("POST", "tokens/revoke", {})["revoked"])

    def add_client(self, client_id: str, client_secret: str, deny: list[str] | None = None) -> None:
        self._call("POST", "clients", {"client_id": client_id, "client_secret": client_secret, "deny": deny or []})

    def wait_ready(self, timeout_seconds: float = 10.0) -> None:
        deadline = time.monotonic() + timeout_seconds
        while True:
            try:
                self._call("GET", "health")
                return
            except OSError:
                if time.monotonic() > deadline:
                    raise
                time.sleep(0.05)
