"""docker-compose.yml: valid, and safe by default (no engine here: validated with `docker-compose config`)."""

from __future__ import annotations

import os
import shutil
import subprocess
from pathlib import Path

import pytest
import redis

from tests.services import RedisServer

COMPOSE = Path(__file__).resolve().parents[2] / "docker-compose.yml"
SECRETS = {"REDIS_PASSWORD": "s3cret-redis", "FLOWER_BASIC_AUTH": "admin:s3cret-flower",
           "GENESYS_CLIENT_ID": "id", "GENESYS_CLIENT_SECRET": "secret", "INTAKE_TOKENS": "s3cret-intake-token-01"}
needs_compose = pytest.mark.skipif(shutil.which("docker-compose") is None, reason="docker-compose not installed")


def render(env: dict[str, str]) -> subprocess.CompletedProcess[str]:
    clean = {k: v for k, v in os.environ.items() if k not in SECRETS}
    return subprocess.run(["docker-compose", "-f", str(COMPOSE), "config"], env={**clean, **env},
                          capture_output=True, text=True, timeout=60, check=False)


@needs_compose
def test_compose_is_valid_and_protected() -> None:
    rendered = render(SECRETS)
    assert rendered.returncode == 0, rendered.stderr
    text = rendered.stdout
    assert "--requirepass" in text and "s3cret-redis" in text
    assert "appendonly" in text and "everysec" in text and "noeviction" in text
    assert "FLOWER_BASIC_AUTH: admin:s3cret-flower" in text
    assert "127.0.0.1:5555:5555" in text or "host_ip: 127.0.0.1" in text
    assert "genesys_closer.worker.health" in text
    assert "--maxmemory" in text and "1gb" in text
    assert "127.0.0.1" in text and "s3cret-intake-token-01" in text and "serve" in text


@needs_compose
@pytest.mark.parametrize("missing", ["REDIS_PASSWORD", "FLOWER_BASIC_AUTH", "GENESYS_CLIENT_SECRET", "INTAKE_TOKENS"])
def test_compose_refuses_to_start_without_secrets(missing: str) -> None:
    rendered = render({k: v for k, v in SECRETS.items() if k != missing})
    assert rendered.returncode != 0 and missing in rendered.stderr


def test_redis_refuses_unauthenticated_clients(redis_server: RedisServer) -> None:
    anonymous = redis.Redis(host="127.0.0.1", port=redis_server.port)
    with pytest.raises(redis.AuthenticationError):
        anonymous.ping()
