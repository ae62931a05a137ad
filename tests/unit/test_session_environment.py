"""worker.genesys.client.EnvironmentOnceSession: the environment's proxy and CA settings, read once per host."""

from __future__ import annotations

import pytest
import requests

from genesys_closer.worker.genesys.client import EnvironmentOnceSession, new_session

API = "https://api.mypurecloud.example/api/v2/conversations/messages/00000000-0000-4000-8000-000000000001"
LOGIN = "https://login.mypurecloud.example/oauth/token"


@pytest.fixture
def proxied(monkeypatch: pytest.MonkeyPatch) -> None:
    for name in ("HTTPS_PROXY", "https_proxy", "HTTP_PROXY", "http_proxy", "NO_PROXY", "no_proxy", "ALL_PROXY",
                 "all_proxy"):
        monkeypatch.delenv(name, raising=False)
    monkeypatch.setenv("HTTPS_PROXY", "http://proxy.internal:3128")
    monkeypatch.setenv("NO_PROXY", "login.mypurecloud.example")
    monkeypatch.setenv("REQUESTS_CA_BUNDLE", "/etc/ssl/certs/ca-certificates.crt")


def test_the_settings_are_requests_own_for_each_host(proxied: None) -> None:
    session, plain = new_session(), requests.Session()
    assert isinstance(session, EnvironmentOnceSession)
    for url in (API, LOGIN, API + "?page=2"):
        assert session.merge_environment_settings(url, {}, None, None, None) == \
            plain.merge_environment_settings(url, {}, None, None, None)
    assert session.merge_environment_settings(API, {}, None, None, None)["proxies"]["https"] == \
        "http://proxy.internal:3128"
    assert "https" not in session.merge_environment_settings(LOGIN, {}, None, None, None)["proxies"]  # NO_PROXY


def test_the_environment_is_read_once_per_host(proxied: None, monkeypatch: pytest.MonkeyPatch) -> None:
    session = new_session()
    first = session.merge_environment_settings(API, {}, None, None, None)
    first["proxies"]["https"] = "changed by a caller"  # a caller's copy, not the kept answer
    monkeypatch.setenv("HTTPS_PROXY", "http://another:3128")
    again = session.merge_environment_settings(API, {}, None, None, None)
    assert again["proxies"]["https"] == "http://proxy.internal:3128"


def test_a_request_with_its_own_proxies_or_without_the_environment_is_left_to_requests(proxied: None) -> None:
    session = new_session()
    own = {"https": "http://explicit:8080"}
    assert session.merge_environment_settings(API, own, None, None, None)["proxies"]["https"] == "http://explicit:8080"
    session.trust_env = False
    assert session.merge_environment_settings(API, {}, None, None, None)["proxies"] == {}
