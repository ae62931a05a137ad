"""The stack's redis-server: a fresh server whose port another server took moves to a free one; a restart keeps its
port (its clients know it) and says plainly that the port is taken."""

from __future__ import annotations

from pathlib import Path

import pytest
import redis

from genesys_closer.emulator.stack import PortTaken, RedisServer


def test_a_fresh_server_given_a_taken_port_moves_to_a_free_one(tmp_path: Path) -> None:
    first = RedisServer(tmp_path / "first").start()
    try:
        second = RedisServer(tmp_path / "second", port=first.port).start()  # two processes handed one port
        try:
            assert second.port != first.port
            assert redis.Redis.from_url(second.url).ping()
            assert redis.Redis.from_url(first.url).ping()  # the other server is untouched
        finally:
            second.stop()
    finally:
        first.stop()


def test_a_restart_on_a_port_taken_meanwhile_fails_plainly(tmp_path: Path) -> None:
    server = RedisServer(tmp_path / "server").start()
    server.stop()
    squatter = RedisServer(tmp_path / "squatter", port=server.port).start()
    try:
        assert squatter.port == server.port
        with pytest.raises(PortTaken):
            server.start()
        assert server.port == squatter.port  # kept: its clients know it
    finally:
        squatter.stop()
        server.stop()
