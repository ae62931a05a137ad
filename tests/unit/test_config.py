"""Settings: regions, overrides, and one clear error naming the variable."""

from __future__ import annotations

import pytest

from genesys_closer.config import load_worker_settings as load_settings
from genesys_closer.config.errors import ConfigError
from genesys_closer.config.regions import REGION_DOMAINS


@pytest.mark.parametrize(("value", "api", "login"), [
    ("mypurecloud.com", "https://api.mypurecloud.com", "https://login.mypurecloud.com"),
    ("usw2.pure.cloud", "https://api.usw2.pure.cloud", "https://login.usw2.pure.cloud"),
    ("us-west-2", "https://api.usw2.pure.cloud", "https://login.usw2.pure.cloud"),
    ("us_west_2", "https://api.usw2.pure.cloud", "https://login.usw2.pure.cloud"),
    ("api.mypurecloud.ie", "https://api.mypurecloud.ie", "https://login.mypurecloud.ie"),
    ("eusc-de-east-1", "https://api.edee1.eusc-pure.cloud", "https://login.edee1.eusc-pure.cloud"),
])
def test_environment_forms(value: str, api: str, login: str) -> None:
    settings = load_settings(genesys_environment=value)
    assert (settings.api_url, settings.login_url) == (api, login)


@pytest.mark.parametrize(("region", "domain"), sorted(REGION_DOMAINS.items()))
def test_every_region_accepted(region: str, domain: str) -> None:
    assert load_settings(genesys_environment=region).genesys_environment == domain
    assert load_settings(genesys_environment=domain).genesys_environment == domain


def test_unknown_environment_lists_valid_values(monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.setenv("GENESYS_ENVIRONMENT", "mypurecloud.moon")
    with pytest.raises(ConfigError) as caught:
        load_settings()
    message = str(caught.value)
    assert "GENESYS_ENVIRONMENT" in message and "mypurecloud.moon" in message
    assert "us-west-2 (usw2.pure.cloud)" in message


@pytest.mark.parametrize(("variable", "value"), [
    ("GENESYS_RATE_LIMIT_PER_MINUTE", "0"),
    ("GENESYS_RATE_LIMIT_PER_MINUTE", "lots"),
    ("GENESYS_API_URL", "ftp://x"),
    ("REDIS_URL", "http://localhost"),
    ("CLOSE_POLICY", "explode"),
    ("CONFIRM_TIMEOUT_SECONDS", "-1"),
])
def test_invalid_values_name_the_variable(monkeypatch: pytest.MonkeyPatch, variable: str, value: str) -> None:
    monkeypatch.setenv(variable, value)
    with pytest.raises(ConfigError, match=variable):
        load_settings()


def test_overrides_for_the_emulator() -> None:
    settings = load_settings(genesys_api_url="http://127.0.0.1:9999/")
    assert settings.api_url == "http://127.0.0.1:9999"
    assert settings.login_url == "http://127.0.0.1:9999"


def test_secret_never_printed(monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.setenv("GENESYS_CLIENT_SECRET", "s3cr3t-value")
    monkeypatch.setenv("GENESYS_CLIENT_ID", "client-1")
    settings = load_settings()
    assert "s3cr3t-value" not in repr(settings) and "s3cr3t-value" not in str(settings)
    assert "s3cr3t-value" not in settings.model_dump_json()
    client_id, secret = settings.require_credentials()
    assert (client_id, secret.get_secret_value()) == ("client-1", "s3cr3t-value")


def test_workers_need_credentials() -> None:
    with pytest.raises(ConfigError, match="GENESYS_CLIENT_ID"):
        load_settings().require_credentials()


def test_visibility_timeout_must_cover_time_limits(monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.setenv("BROKER_VISIBILITY_TIMEOUT_SECONDS", "50")
    with pytest.raises(ConfigError, match="BROKER_VISIBILITY_TIMEOUT_SECONDS"):
        load_settings()


def test_env_example_is_valid_and_complete() -> None:
    from pathlib import Path

    from genesys_closer.config.settings import WorkerSettings as Settings

    example = Path(__file__).resolve().parents[2] / "config" / ".env.example"
    settings = load_settings(_env_file=str(example))
    assert settings.genesys_rate_limit_per_minute == 300 and settings.sweep_idle_minutes is None
    documented = {line.split("=", 1)[0] for line in example.read_text().splitlines() if "=" in line
                  and not line.startswith("#")}
    assert {name.upper() for name in Settings.model_fields} <= documented


def test_empty_values_mean_unset(monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.setenv("GENESYS_API_URL", "")
    monkeypatch.setenv("SWEEP_IDLE_MINUTES", "")
    settings = load_settings()
    assert settings.genesys_api_url is None and settings.sweep_idle_minutes is None
