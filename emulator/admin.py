"""A small client for the emulator's admin API (stdlib only), for tests, the demo and the benchmarks."""

from __future__ import annotations

import json
import time
import urllib.request
from typing import Any
from urllib.parse import urlencode


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

    def create(self, count: int, kind: str = "webmessaging", *, org: str | None = None, **extra: Any) -> list[str]:
        """New conversations in ``org`` (None: ``default``); ``extra``: age_minutes, idle_minutes, queue_id, ids."""
        ids: list[str] = self._call("POST", "conversations", {"count": count, "kind": kind, **_org(org), **extra})[
            "ids"]
        return ids

    def conversations(self, *, org: str | None = None, **filters: str) -> list[dict[str, Any]]:
        query = urlencode({**filters, **_org(org)})
        rows: list[dict[str, Any]] = self._call("GET", "conversations" + (f"?{query}" if query else ""))[
            "conversations"]
        return rows

    def conversation(self, conversation_id: str, *, org: str | None = None) -> dict[str, Any]:
        query = urlencode(_org(org))
        row: dict[str, Any] = self._call("GET", f"conversations/{conversation_id}" + (f"?{query}" if query else ""))
        return row

    def fix(self, conversation_id: str, *, org: str | None = None) -> None:
        """The cause is fixed: the conversation takes a close from now on (a ``stuck`` one no longer ignores it)."""
        self._call("POST", f"conversations/{conversation_id}/fix", {**_org(org)})

    def stats(self) -> dict[str, Any]:
        """Totals over every org, and each org's counts under ``orgs``."""
        stats: dict[str, Any] = self._call("GET", "stats")
        return stats

    def requests(self, since: int = 0) -> list[dict[str, Any]]:
        """The request log; each row names the ``org`` of its token (or of the client asking for one)."""
        rows: list[dict[str, Any]] = self._call("GET", f"requests?since={since}")["requests"]
        return rows

    def reset(self, conversations: bool = False, faults: bool = False) -> None:
        """Clear the statistics and request log; with ``conversations`` every conversation, with ``faults`` every
        injected fault (back to a healthy emulator), in every org."""
        self._call("POST", "reset", {"conversations": conversations, "faults": faults})

    def faults(self, *, org: str | None = None, **changes: Any) -> dict[str, Any]:
        """Change faults; with ``org``, only what that org suffers on its own (429 bursts and storms, 5xx, its
        limit)."""
        view: dict[str, Any] = self._call("POST", "faults", {**changes, **_org(org)})
        return view

    def revoke_tokens(self, *, org: str | None = None, client_id: str | None = None) -> int:
        body: dict[str, Any] = {**_org(org)}
        if client_id is not None:
            body["client_id"] = client_id
        return int(self._call("POST", "tokens/revoke", body)["revoked"])

    def add_client(self, client_id: str, client_secret: str, deny: list[str] | None = None, *,
                   org: str | None = None) -> None:
        self._call("POST", "clients", {"client_id": client_id, "client_secret": client_secret, "deny": deny or [],
                                       **_org(org)})

    def add_org(self, name: str, client_id: str, client_secret: str, *, rate_limit_per_minute: int | None = None,
                deny: list[str] | None = None) -> None:
        """A new org with its OAuth client (its limit per token: the default org's unless given)."""
        self._call("POST", "orgs", {"name": name, "client_id": client_id, "client_secret": client_secret,
                                    "rate_limit_per_minute": rate_limit_per_minute, "deny": deny or []})

    def orgs(self) -> dict[str, dict[str, Any]]:
        """Each org's counts: requests, conversations open and closed, PATCHes, tokens, limit, clients."""
        orgs: dict[str, dict[str, Any]] = self._call("GET", "orgs")["orgs"]
        return orgs

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


def _org(org: str | None) -> dict[str, str]:
    return {} if org is None else {"org": org}
