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


SENTINEL = {"redis_url": "redis://:pw@genesys-closer/2", "redis_sentinels": "10.0.0.1:26379, s2:26380,[::1]:26381",
            "redis_sentinel_master": "genesys-closer"}


def test_plain_redis_url_needs_no_sentinel_setting() -> None:
    from genesys_closer.shared.celery_config import producer_config

    settings = load_settings(redis_url="redis://:pw@redis:6379/0")
    assert not settings.redis_target.uses_sentinel
    conf = producer_config(settings)
    assert conf["broker_url"] == conf["result_backend"] == "redis://:pw@redis:6379/0"
    assert "master_name" not in conf["broker_transport_options"]


def test_sentinel_settings_reach_broker_and_backend() -> None:
    from genesys_closer.shared.celery_config import producer_config

    settings = load_settings(**SENTINEL, redis_sentinel_password="sentinel-secret")
    target = settings.redis_target
    assert target.sentinels == (("10.0.0.1", 26379), ("s2", 26380), ("::1", 26381))
    assert (target.master, target.database, target.master_credentials()) == ("genesys-closer", 2, {"password": "pw"})
    conf = producer_config(settings)
    assert conf["broker_url"] == conf["result_backend"] == (
        "sentinel://:pw@10.0.0.1:26379/2;sentinel://:pw@s2:26380/2;sentinel://:pw@[::1]:26381/2")
    for options in (conf["broker_transport_options"], conf["result_backend_transport_options"]):
        assert options["master_name"] == "genesys-closer"
        assert options["sentinel_kwargs"]["password"] == "sentinel-secret"
    assert "sentinel-secret" not in repr(settings) and "sentinel-secret" not in target.describe()
    assert "pw" not in target.describe()
    from celery.app.utils import filter_hidden_settings

    shown = str(filter_hidden_settings(conf))  # what Flower and `celery inspect conf` show
    assert ":pw@" not in shown and "sentinel-secret" not in shown


@pytest.mark.parametrize(("overrides", "named"), [
    ({"redis_sentinels": "sentinel-1"}, "REDIS_SENTINELS"),
    ({"redis_sentinels": "s1:0"}, "REDIS_SENTINELS"),
    ({"redis_sentinels": "s1:26379,s1:26379"}, "REDIS_SENTINELS"),
    ({"redis_sentinel_master": ""}, "REDIS_SENTINEL_MASTER"),
    ({"redis_sentinel_master": "bad name"}, "REDIS_SENTINEL_MASTER"),
    ({"redis_url": "rediss://:pw@x/0"}, "REDIS_URL"),
    ({"redis_url": "unix:///run/redis.sock"}, "REDIS_URL"),
    ({"redis_sentinels": ""}, "REDIS_SENTINELS"),  # a master name alone: Sentinel half configured
])
def test_sentinel_settings_are_validated(overrides: dict[str, str], named: str) -> None:
    with pytest.raises(ConfigError, match=named) as caught:
        load_settings(**(SENTINEL | overrides))
    assert "\n" not in str(caught.value)


def test_sentinel_password_without_sentinels_is_refused(monkeypatch: pytest.MonkeyPatch) -> None:
    from genesys_closer.config import load_producer_settings

    monkeypatch.setenv("REDIS_SENTINEL_PASSWORD", "x")
    with pytest.raises(ConfigError, match="REDIS_SENTINEL_PASSWORD is set but REDIS_SENTINELS is not"):
        load_producer_settings()
