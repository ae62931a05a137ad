"""Baseline (a): the seed tutorial's approach, with only its wrong endpoint and body corrected.

One request at a time, ``requests.post``/``requests.patch`` module functions (a new connection per request),
client credentials in the form body, its retry loop (3 attempts, ``2 ** attempt + U(0, 1)`` seconds on 429 only),
no validation read and no confirmation. The tutorial's literal ``/api/v2/conversations/webchat`` path and
``{"state": "closed"}`` body would fail every call, so they are replaced by the real ones.
"""

from __future__ import annotations

import random
import time
from dataclasses import dataclass, field

import requests


@dataclass
class TutorialCloser:
    base_url: str
    client_id: str
    client_secret: str
    access_token: str | None = None
    token_expiry: float = 0.0
    calls: int = 0
    rate_limited: int = 0
    failures: list[str] = field(default_factory=list)

    def get_access_token(self) -> str:
        if self.access_token and time.time() < self.token_expiry - 60:
            return self.access_token
        response = requests.post(f"{self.base_url}/oauth/token", data={
            "grant_type": "client_credentials", "client_id": self.client_id, "client_secret": self.client_secret},
            headers={"Content-Type": "application/x-www-form-urlencoded"}, timeout=30)
        response.raise_for_status()
        data = response.json()
        self.access_token = data["access_token"]
        self.token_expiry = time.time() + data["expires_in"]
        return str(self.access_token)

    def close_conversation(self, conversation_id: str) -> None:
        headers = {"Authorization": f"Bearer {self.get_access_token()}", "Content-Type": "application/json"}
        self.calls += 1
        response = requests.patch(f"{self.base_url}/api/v2/conversations/messages/{conversation_id}",
                                  headers=headers, json={"state": "disconnected"}, timeout=30)
        if response.status_code == 429:
            self.rate_limited += 1
        response.raise_for_status()

    def close_conversation_with_retry(self, conversation_id: str, max_retries: int = 3) -> None:
        for attempt in range(max_retries):
            try:
                self.close_conversation(conversation_id)
                return
            except requests.exceptions.HTTPError as exc:
                if exc.response is not None and exc.response.status_code == 429:
                    time.sleep(2**attempt + random.uniform(0, 1))
                    continue
                self.failures.append(f"{conversation_id}: {exc.response.status_code if exc.response else exc}")
                return
        self.failures.append(f"{conversation_id}: retries exhausted")
