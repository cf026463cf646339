"""The Lua scripts of the feed cache and the graph, registered once per client.

Each script is the shared `lua/common.lua` followed by its own file, so the rules for activating
a follow edge (graph sets, then backfill or celebrity pull) live in one place. redis-py's `Script`
loads a script again after a server restart (NOSCRIPT), so a restarted Valkey needs nothing else.
"""

from __future__ import annotations

from dataclasses import dataclass
from pathlib import Path

import redis

LUA_DIR = Path(__file__).with_name("lua")


def _source(name: str) -> str:
    return (LUA_DIR / "common.lua").read_text() + "\n" + (LUA_DIR / f"{name}.lua").read_text()


@dataclass(frozen=True)
class Scripts:
    follow: redis.commands.core.Script
    approve: redis.commands.core.Script
    unfollow: redis.commands.core.Script
    user: redis.commands.core.Script
    fanout_post: redis.commands.core.Script
    feed_build: redis.commands.core.Script

    @classmethod
    def register(cls, client: redis.Redis) -> Scripts:
        return cls(**{name: client.register_script(_source(name)) for name in cls.__dataclass_fields__})
