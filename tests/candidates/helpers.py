"""Shared by the candidate generation tests: a fresh key prefix per test, state dumps, a clock."""

from __future__ import annotations

import uuid

import redis

from candidate_gen.block import CandidateBlock
from candidate_gen.config import CandidateConfig, SourceConfig
from candidate_gen.reads import Reads

T0 = 1_790_000_000_000  # an epoch-ms instant in the simulated October
HOUR = 3_600_000


def fresh_config(celebrity_followers: int | None = 3, **feed) -> CandidateConfig:
    """A fresh key prefix; celebrities from 3 followers (None: the shared rule's derived threshold)."""
    base = {"key_prefix": f"t{uuid.uuid4().hex[:8]}:", **feed}
    return CandidateConfig.load().with_feed(**base).with_celebrity(followers=celebrity_followers)


def dump(client: redis.Redis, cfg: CandidateConfig, skip: tuple[str, ...] = ("ckpt:", "meta")) -> dict:
    """Every key of the layout with its content (sets/zsets as sorted lists), bookkeeping aside."""
    out = {}
    prefix = cfg.keys.prefix
    for raw in client.scan_iter(match=cfg.keys.pattern, count=1000):
        key = raw.decode()
        if key.removeprefix(prefix).startswith(skip):
            continue
        kind = client.type(raw).decode()
        if kind == "zset":
            out[key] = sorted(client.zrange(raw, 0, -1, withscores=True))
        elif kind == "set":
            out[key] = sorted(client.smembers(raw))
        elif kind == "hash":
            out[key] = sorted(client.hgetall(raw).items())
        else:
            out[key] = client.get(raw)
    return out


class FlakyRedis(redis.Redis):
    """A real client whose first `fail` pipelined reads time out (an injected transient fault)."""

    def __init__(self, url: str, fail: int):
        super().__init__(connection_pool=redis.ConnectionPool.from_url(url))
        self.fail, self.executed = fail, 0

    def pipeline(self, transaction=True, shard_hint=None):
        pipe = super().pipeline(transaction, shard_hint)
        execute = pipe.execute

        def flaky(raise_on_error: bool = True):
            self.executed += 1
            if self.executed <= self.fail:
                raise redis.TimeoutError("injected: a reply later than the socket timeout")
            return execute(raise_on_error)

        pipe.execute = flaky
        return pipe


class FakeClock:
    """A clock a test moves (run_sources' `clock`, in seconds): no test waits on the wall clock."""

    def __init__(self):
        self.s = 0.0

    def __call__(self) -> float:
        return self.s

    def advance(self, ms: float) -> None:
        self.s += ms / 1000


class StepSource:
    """A source whose plan takes `steps` real round trips (a PING each) and returns posts `ids`;
    each step moves `clock` on by `ms_per_step` (how late it is), or it raises after its steps."""

    def __init__(self, name: str, ids, steps: int = 1, clock: FakeClock | None = None, ms_per_step: float = 0.0,
                 fail: bool = False, **conf):
        self.name, self.ids, self.steps, self.fail = name, list(ids), steps, fail
        self.clock, self.ms_per_step = clock, ms_per_step
        self.config = SourceConfig(**{"cap": 3, "timeout_ms": 60_000, **conf})

    def plan(self, request):
        for _ in range(self.steps):
            got = yield Reads().command("ping")
            assert got.commands == [True]
            if self.clock is not None:
                self.clock.advance(self.ms_per_step)
        if self.fail:
            raise ConnectionError("redis down")
        return CandidateBlock.build(self.ids, 1, 0, "trending", 0.0)
