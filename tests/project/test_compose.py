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
    assert "genesys_closer.worker.ops.health" in text
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


HA_SERVICES = ("redis-replica", "sentinel-1", "sentinel-2", "sentinel-3")


def service_block(text: str, name: str) -> str:
    """One service of a rendered compose file (``docker-compose config`` output, two-space indents)."""
    start = text.index(f"\n  {name}:\n") + 1
    end = next((i for i in range(start + 1, len(text)) if text[i - 1] == "\n" and text[i:i + 3] != "   "
                and text[i] != "\n"), len(text))
    return text[start:end]


@needs_compose
def test_ha_profile_is_optional_valid_and_protected() -> None:
    ha = {**SECRETS, "REDIS_SENTINELS": "sentinel-1:26379,sentinel-2:26379,sentinel-3:26379",
          "REDIS_SENTINEL_MASTER": "genesys-closer", "REDIS_SENTINEL_PASSWORD": "s3cret-sentinel"}
    clean = {k: v for k, v in os.environ.items() if k not in SECRETS}
    rendered = subprocess.run(["docker-compose", "-f", str(COMPOSE), "--profile", "ha", "config"],
                              env={**clean, **ha}, capture_output=True, text=True, timeout=60, check=False)
    assert rendered.returncode == 0, rendered.stderr
    text = rendered.stdout
    for name in HA_SERVICES:  # started only with --profile ha: a plain deployment runs no replica, no sentinel
        assert "profiles:\n    - ha\n" in service_block(text, name)
    for name in ("redis", "worker", "beat", "flower", "intake"):
        assert "profiles:" not in service_block(text, name)
    replica = service_block(text, "redis-replica")
    assert "--replicaof" in replica and "--requirepass" in replica and "s3cret-redis" in replica
    assert "--masterauth" in service_block(text, "redis")  # the master, once demoted, must reach the new one
    for name in ("worker", "beat", "flower", "intake"):  # every client asks the sentinels
        block = service_block(text, name)
        assert "REDIS_SENTINELS: sentinel-1:26379,sentinel-2:26379,sentinel-3:26379" in block
        assert "REDIS_SENTINEL_PASSWORD: s3cret-sentinel" in block
    for name in HA_SERVICES[1:]:
        assert "REDIS_SENTINEL_PASSWORD: s3cret-sentinel" in service_block(text, name)
    assert render({k: v for k, v in ha.items() if k != "REDIS_PASSWORD"}).returncode != 0


def sentinel_script() -> str:
    """The sentinel services' start script, as the container's shell runs it (compose's $$ is a literal $)."""
    lines = COMPOSE.read_text().splitlines()
    start = lines.index("  sentinel-1: &sentinel")
    block = lines.index("      - |", start) + 1
    body = []
    for line in lines[block:]:
        if line.strip() and not line.startswith(" " * 8):
            break
        body.append(line[8:])
    return "\n".join(body).replace("$$", "$")


def test_a_sentinel_refuses_to_start_without_its_password(tmp_path: Path) -> None:
    script = sentinel_script()
    assert "exec redis-sentinel" in script
    run = subprocess.run(["sh", "-ec", script], env={"PATH": os.environ["PATH"], "REDIS_SENTINEL_PASSWORD": "",
                                                     "REDIS_PASSWORD": "x", "MASTER": "m", "SENTINEL_NAME": "s"},
                         cwd=tmp_path, capture_output=True, text=True, timeout=30, check=False)
    assert run.returncode == 78 and "set REDIS_SENTINEL_PASSWORD" in run.stderr
