"""Messages naming orgs the workers do not serve, against a real Redis: each is refused and kept with the default
org's rejected messages, creates no state of its org, names no org the deployment serves (callers of the intake see
the record), and a flood of made-up names does not grow the worker process (each name used to cache a store of its
own for good, about 13 KB each)."""

from __future__ import annotations

from collections.abc import Iterator
from pathlib import Path

import pytest
import redis

from genesys_closer.config import settings as settings_module
from genesys_closer.config.redis_keys import keys_for
from genesys_closer.shared.names import TASK_NAME
from genesys_closer.shared.stores import ResultStores
from genesys_closer.worker import factory

CID = "00000000-0000-4000-8000-0000000000aa"


@pytest.fixture
def worker_config(redis_url: str, tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> Iterator[None]:
    orgs = tmp_path / "orgs.toml"
    orgs.write_text('[orgs.secret-customer]\nclient_id = "c"\nclient_secret_env = "CUSTOMER_SECRET"\n')
    for name, value in {"REDIS_URL": redis_url, "GENESYS_CLIENT_ID": "d", "GENESYS_CLIENT_SECRET": "s",
                        "ORGS_FILE": str(orgs), "CUSTOMER_SECRET": "x"}.items():
        monkeypatch.setenv(name, value)
    caches = (settings_module.get_worker_settings, settings_module.get_org_settings, factory._redis_for,
              factory._results_for, factory._writer_for)
    for cache in caches:
        cache.cache_clear()
    yield
    for cache in caches:
        cache.cache_clear()


@pytest.mark.usefixtures("worker_config")
def test_messages_naming_made_up_orgs_are_refused_without_growing_the_worker(redis_client: redis.Redis) -> None:
    factory.record_rejected(TASK_NAME, "t-0", [[CID], {"org": "warm-up"}, None], "unknown org")
    cached = factory._results_for.cache_info().currsize
    for number in range(600):
        record = factory.record_rejected(TASK_NAME, f"t-{number}", [[CID], {"org": f"made-up-{number}"}, None],
                                         str(factory.UnknownOrg(f"made-up-{number}", factory.org_names())))
        assert record["outcome"] == "invalid_request" and record["org"] == f"made-up-{number}"
        assert "secret-customer" not in record["error"]  # no served org is named to whoever sent it
    assert factory._results_for.cache_info().currsize == cached  # nothing kept per made-up org
    assert keys_for.cache_info().maxsize is not None  # and the key names' cache is bounded
    rejected = ResultStores.open(redis_client, 3600).rejected.recent(1000)
    assert rejected[0]["org"] == "made-up-599"  # kept with the default org's
    assert not [key for key in redis_client.scan_iter("genesys-closer:{*")]  # no state of any made-up org
