"""The Lua scripts that change a batch hash, each loaded after the transition table ``batch_state.lua_table()``
renders and the shared ``batch_transition.lua`` (so every state change in Redis follows ``next_state``)."""

from __future__ import annotations

import redis
from redis.commands.core import Script

from genesys_closer.shared.redis_connection import lua_source
from genesys_closer.shared.stores.batch_state import lua_table


def batch_script_source(name: str) -> str:
    return lua_table() + lua_source("batch_transition.lua", name)


def register_batch_script(client: redis.Redis, name: str) -> Script:
    """Register ``genesys_closer/shared/lua/<name>`` with the transition table and functions in front of it."""
    return client.register_script(batch_script_source(name))
