"""Token providers without Redis."""

from __future__ import annotations

from genesys_closer.worker.genesys.tokens import (
    InProcessTokenProvider,
    TokenGrant,
    encryption_key,
    fingerprint,
    lifetime_seconds,
)


class Fetcher:
    def __init__(self) -> None:
        self.calls = 0

    def __call__(self) -> TokenGrant:
        self.calls += 1
        return TokenGrant(f"token-{self.calls}", 3600)


def test_cached_until_margin_then_refreshed() -> None:
    now = [0.0]
    fetch = Fetcher()
    provider = InProcessTokenProvider(fetch, margin_seconds=300, clock=lambda: now[0])
    assert provider.get() == "token-1"
    now[0] = 3299
    assert provider.get() == "token-1"
    now[0] = 3300
    assert provider.get() == "token-2"
    assert fetch.calls == 2


def test_invalidate_drops_only_the_refused_token() -> None:
    fetch = Fetcher()
    provider = InProcessTokenProvider(fetch)
    first = provider.get()
    provider.invalidate("some-other-token")
    assert provider.get() == first
    provider.invalidate(first)
    assert provider.get() == "token-2"


def test_lifetime_keeps_half_when_margin_too_big() -> None:
    assert lifetime_seconds(TokenGrant("t", 600), 300) == 300
    assert lifetime_seconds(TokenGrant("t", 400), 300) == 200


def test_grant_repr_hides_token() -> None:
    assert "abc123" not in repr(TokenGrant("abc123", 10))


def test_key_depends_on_secret_and_client() -> None:
    assert encryption_key("a", "s1") != encryption_key("a", "s2")
    assert encryption_key("a", "s1") != encryption_key("b", "s1")
    assert fingerprint("token") != "token" and len(fingerprint("token")) == 16
