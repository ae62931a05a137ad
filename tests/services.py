"""Real services for tests (loopback only): re-exported from the shared local stack."""

from __future__ import annotations

import secrets
import subprocess
from collections import Counter
from dataclasses import dataclass, field
from pathlib import Path

import redis

from genesys_closer.emulator.stack import (
    BeatProcess,
    CeleryWorker,
    FlowerProcess,
    RedisServer,
    free_port,
    start_workers,
)
from genesys_closer.emulator.stack import closer_env as _closer_env
from tests.waiting import wait_until


def worker_env(redis_url: str, emulator_url: str, **overrides: object) -> dict[str, str]:
    """Worker settings tuned for fast tests: short confirm polls and time limits."""
    defaults: dict[str, object] = {
        "GENESYS_RATE_LIMIT_PER_MINUTE": 60000,
        "CONFIRM_INITIAL_DELAY_SECONDS": 0.2,  # > the test emulators' consistency delay: one confirming read
        "CONFIRM_MAX_INTERVAL_SECONDS": 0.3,
        "CONFIRM_TIMEOUT_SECONDS": 5,
        "RETRY_BASE_SECONDS": 0.1,
        "RETRY_INLINE_MAX_WAIT_SECONDS": 3,
        "GENESYS_DEFAULT_COOLDOWN_SECONDS": 2,
        "TASK_SOFT_TIME_LIMIT_SECONDS": 20,
        "TASK_TIME_LIMIT_SECONDS": 25,
        "TASK_MAX_COUNTDOWN_SECONDS": 5,
        "BROKER_VISIBILITY_TIMEOUT_SECONDS": 35,
        "BROKER_RESTORE_INTERVAL_SECONDS": 2,
        "BATCH_STALL_SECONDS": 45,
        "BATCHED_GATHER_SECONDS": 0.3,
        "CONFIRM_ANALYTICS_FIRST_CHECK_SECONDS": 0.3,
        "CONFIRM_ANALYTICS_MAX_INTERVAL_SECONDS": 1,
        "CONFIRM_ANALYTICS_TIMEOUT_SECONDS": 6,
    }
    defaults.update({k.upper(): v for k, v in overrides.items()})
    return _closer_env(redis_url, emulator_url, **defaults)


__all__ = ["BeatProcess", "CeleryWorker", "FlowerProcess", "RedisProcess", "RedisServer", "SentinelTopology",
           "free_port", "start_workers", "worker_env"]


@dataclass
class RedisProcess:
    """One redis-server (or redis-sentinel) on a loopback port, from a config file written by the topology."""

    name: str
    workdir: Path
    config: str
    port: int = field(default_factory=free_port)
    sentinel: bool = False
    process: subprocess.Popen[bytes] | None = None

    def start(self) -> RedisProcess:
        self.workdir.mkdir(parents=True, exist_ok=True)
        conf = self.workdir / f"{self.name}.conf"
        if not conf.exists():  # a sentinel rewrites its own file: a restart keeps what it learned
            conf.write_text(f"port {self.port}\nbind 127.0.0.1\ndir {self.workdir}\n{self.config}")
        command = ["redis-sentinel", str(conf)] if self.sentinel else ["redis-server", str(conf)]
        log = (self.workdir / f"{self.name}.log").open("ab")
        self.process = subprocess.Popen(command, stdout=log, stderr=subprocess.STDOUT)
        return self

    def kill(self) -> None:
        """SIGKILL: nothing flushed, no replica told."""
        if self.process is not None and self.process.poll() is None:
            self.process.kill()
            self.process.wait(timeout=10)

    def stop(self) -> None:
        if self.process is not None and self.process.poll() is None:
            self.process.terminate()
            try:
                self.process.wait(timeout=20)
            except subprocess.TimeoutExpired:
                self.kill()


@dataclass
class SentinelTopology:
    """One master, one replica and three sentinels (quorum 2) on loopback, passwords on all of them, with sentinel
    timeouts short enough for a test: the master is judged down after ``down_after_ms`` without an answer. (Sentinel
    promotes no replica that lost its master more than ten times that before the master went down: at 1 s, a
    replica cut off for 10 s on a loaded machine was never promoted; 2 s gives a cut-off replica 20 s.)"""

    workdir: Path
    master_name: str = "genesys-closer"
    password: str = field(default_factory=lambda: secrets.token_hex(12))
    sentinel_password: str = field(default_factory=lambda: secrets.token_hex(12))
    down_after_ms: int = 2000
    failover_timeout_ms: int = 5000
    servers: list[RedisProcess] = field(default_factory=list)
    sentinels: list[RedisProcess] = field(default_factory=list)

    def start(self, timeout: float = 30.0) -> SentinelTopology:
        data = (f"requirepass {self.password}\nmasterauth {self.password}\nappendonly yes\nappendfsync everysec\n"
                "maxmemory-policy noeviction\nsave \"\"\nprotected-mode yes\nrepl-diskless-sync-delay 0\n")
        master = RedisProcess("redis-a", self.workdir / "redis-a", data)
        replica = RedisProcess("redis-b", self.workdir / "redis-b", data + f"replicaof 127.0.0.1 {master.port}\n")
        self.servers = [master.start(), replica.start()]
        watch = (f"requirepass {self.sentinel_password}\n"
                 f"sentinel monitor {self.master_name} 127.0.0.1 {master.port} 2\n"
                 f"sentinel auth-pass {self.master_name} {self.password}\n"
                 f"sentinel down-after-milliseconds {self.master_name} {self.down_after_ms}\n"
                 f"sentinel failover-timeout {self.master_name} {self.failover_timeout_ms}\n"
                 f"sentinel parallel-syncs {self.master_name} 1\n"
                 # known from the start: found through the master's INFO, it took a sentinel up to 10 s
                 f"sentinel known-replica {self.master_name} 127.0.0.1 {replica.port}\n")
        self.sentinels = [RedisProcess(f"sentinel-{i}", self.workdir / f"sentinel-{i}", watch, sentinel=True).start()
                          for i in (1, 2, 3)]
        wait_until(lambda: self._replicating(replica.port), timeout, message="replica in sync")
        wait_until(lambda: all(self._sentinel_sees_all(s.port) for s in self.sentinels), timeout,
                   message="every sentinel sees the replica and the two other sentinels")
        return self

    def client(self, port: int) -> redis.Redis:
        return redis.Redis(host="127.0.0.1", port=port, password=self.password, socket_timeout=2,
                           socket_connect_timeout=2)

    def sentinel_client(self, port: int) -> redis.Redis:
        return redis.Redis(host="127.0.0.1", port=port, password=self.sentinel_password, socket_timeout=2,
                           socket_connect_timeout=2, decode_responses=True)

    def _replicating(self, port: int) -> bool:
        try:
            return str(self.client(port).info("replication").get("master_link_status")) == "up"
        except redis.RedisError:
            return False

    def _sentinel_sees_all(self, port: int) -> bool:
        try:
            state = self.sentinel_client(port).sentinel_master(self.master_name)
        except redis.RedisError:
            return False
        return int(state.get("num-slaves", 0)) >= 1 and int(state.get("num-other-sentinels", 0)) >= 2

    def _reported_master_ports(self) -> list[int | None]:
        """The master's port as each sentinel reports it (None where a sentinel cannot say)."""
        ports: list[int | None] = []
        for sentinel in self.sentinels:
            try:
                _, port = self.sentinel_client(sentinel.port).sentinel_get_master_addr_by_name(self.master_name)
                ports.append(int(port))
            except (redis.RedisError, TypeError):
                ports.append(None)
        return ports

    def master_port(self) -> int | None:
        """The master's port as a majority of the sentinels report it (None while they disagree or cannot say)."""
        votes = Counter(port for port in self._reported_master_ports() if port is not None)
        best = votes.most_common(1)
        return best[0][0] if best and best[0][1] >= 2 else None

    def every_sentinel_names(self, port: int) -> bool:
        """Every sentinel reports the master at ``port`` (not only a majority, as ``master_port`` asks)."""
        return all(reported == port for reported in self._reported_master_ports())

    def server(self, port: int) -> RedisProcess:
        return next(server for server in self.servers if server.port == port)

    def is_master(self, port: int) -> bool:
        try:
            return str(self.client(port).info("replication").get("role")) == "master"
        except redis.RedisError:
            return False

    def cut_replica(self, port: int) -> None:
        """Cut the replica at ``port`` off its master (it can no longer authenticate), so that every write the master
        acknowledges from now on is one a failover loses: replication lag, made deterministic."""
        replica = self.client(port)
        replica.config_set("masterauth", "cut-off-" + secrets.token_hex(4))
        replica.client_kill_filter(_type="master")
        wait_until(lambda: not self._replicating(port), 10, message="replica cut off")

    def mend_replica(self, port: int) -> None:
        """Give the server at ``port`` its master password back (after it was promoted, for later failovers)."""
        self.client(port).config_set("masterauth", self.password)

    def is_replica_in_sync(self, port: int) -> bool:
        """The server at ``port`` replicates the current master and its link is up."""
        try:
            info = self.client(port).info("replication")
        except redis.RedisError:
            return False
        return (str(info.get("role")) == "slave" and str(info.get("master_link_status")) == "up"
                and int(info.get("master_port", 0)) == self.master_port())

    @property
    def sentinel_hosts(self) -> str:
        return ",".join(f"127.0.0.1:{s.port}" for s in self.sentinels)

    def redis_url(self, db: int = 0) -> str:
        """REDIS_URL with Sentinel: the master's password and database (its host is not used)."""
        return f"redis://:{self.password}@{self.master_name}/{db}"

    def env(self, db: int = 0) -> dict[str, str]:
        """The settings that point genesys-closer at this topology."""
        return {"REDIS_URL": self.redis_url(db), "REDIS_SENTINELS": self.sentinel_hosts,
                "REDIS_SENTINEL_MASTER": self.master_name, "REDIS_SENTINEL_PASSWORD": self.sentinel_password}

    def stop(self) -> None:
        for process in [*self.sentinels, *self.servers]:
            process.stop()
