"""Where genesys-closer's Redis is: one URL, or a master found through Redis Sentinel.

``REDIS_URL`` always gives the data server's credentials and database (``redis://[user:]password@host:port/db``).
With ``REDIS_SENTINELS`` set, the host and port of ``REDIS_URL`` are not used: the sentinels name the current
master of ``REDIS_SENTINEL_MASTER``, and every client (the broker, the result backend, the product's own state)
asks them again after a failover. Pure values here; the clients are built in ``shared.redis_connection``
(redis-py) and ``shared.celery_config`` (kombu and Celery).
"""

from __future__ import annotations

from dataclasses import dataclass
from urllib.parse import unquote, urlsplit

from pydantic import SecretStr

SENTINEL_DEFAULT_PORT = 26379


def parse_sentinels(value: str) -> tuple[tuple[str, int], ...]:
    """``host:port,host:port`` (``[v6]:port`` for IPv6) as (host, port) pairs; ValueError naming the bad entry."""
    pairs: list[tuple[str, int]] = []
    for raw in value.split(","):
        entry = raw.strip()
        if not entry:
            continue
        host, sep, port_text = entry.rpartition(":")
        if host.startswith("[") and host.endswith("]"):
            host = host[1:-1]
        if not sep or not host or not port_text.isdigit() or not 0 < int(port_text) < 65536 or " " in host:
            raise ValueError(f"{entry[:100]!r} is not host:port (e.g. sentinel-1:{SENTINEL_DEFAULT_PORT})")
        pairs.append((host, int(port_text)))
    if len(set(pairs)) != len(pairs):
        raise ValueError("lists a sentinel twice")
    return tuple(pairs)


@dataclass(frozen=True)
class RedisTarget:
    """The Redis every part of genesys-closer connects to (see the module docstring)."""

    url: str
    sentinels: tuple[tuple[str, int], ...] = ()
    master: str = ""
    sentinel_password: SecretStr | None = None

    @property
    def uses_sentinel(self) -> bool:
        return bool(self.sentinels)

    @property
    def userinfo(self) -> str:
        """``user:password`` of ``url`` as written there (still percent-encoded), or ``""``."""
        netloc = urlsplit(self.url).netloc
        return netloc.rpartition("@")[0] if "@" in netloc else ""

    @property
    def database(self) -> int:
        path = urlsplit(self.url).path.strip("/")
        return int(path) if path.isdigit() else 0

    def master_credentials(self) -> dict[str, str]:
        """The master's ``username`` and ``password`` from ``url`` (decoded; absent when not given)."""
        user, _, password = self.userinfo.partition(":")  # as redis-py and kombu read it: "name@" is a user name
        credentials = {"username": unquote(user), "password": unquote(password)}
        return {key: value for key, value in credentials.items() if value}

    def sentinel_secret(self) -> str | None:
        return self.sentinel_password.get_secret_value() if self.sentinel_password else None

    def describe(self) -> str:
        """Where this points, without any secret (for messages and logs)."""
        if not self.uses_sentinel:
            parts = urlsplit(self.url)
            return f"{parts.scheme}://{parts.hostname or ''}{f':{parts.port}' if parts.port else ''}{parts.path}"
        hosts = ",".join(f"{host}:{port}" for host, port in self.sentinels)
        return f"master {self.master!r} of sentinels {hosts}, database {self.database}"
