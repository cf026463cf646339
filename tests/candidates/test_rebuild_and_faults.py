"""Rebuilds from the lake and a Redis outage in the middle of a fan-out run (tiny world)."""

from __future__ import annotations

import threading
import time

import pytest
import redis

from candidate_gen.config import FanoutConfig
from candidate_gen.fanout import FanoutWorker
from candidate_gen.filters import default_chain
from candidate_gen.home import HomeCandidateReader
from candidate_gen.rebuild import active_viewers, rebuild_all, rebuild_viewer
from data.days import day_end_ms
from data.redis_server import EmbeddedRedis
from tests.candidates.helpers import dump, fresh_config

GRAPH = ("followers:", "following:", "pending:", "private", "users", "blocks:", "blockedby:", "mutes:",
         "posts:", "tomb")


def graph_part(state: dict, prefix: str) -> dict:
    return {k.removeprefix(prefix): v for k, v in state.items() if k.removeprefix(prefix).startswith(GRAPH)}


@pytest.fixture(scope="module")
def tiny(tiny_lake):
    settings, summary, _ = tiny_lake
    return settings.lake_dir, summary.days


def test_incremental_day_equals_rebuild_through_that_day(redis_server, tiny):
    lake_dir, days = tiny
    client = redis.Redis.from_url(redis_server.url)
    step, whole = fresh_config(celebrity_followers=None), fresh_config(celebrity_followers=None)
    rebuild_all(lake_dir, days[-2], client, step)
    stats = FanoutWorker(client, step).run_day(lake_dir, days[-1])
    assert stats.reconciles and stats.posts > 0 and stats.inserts > 0
    out = rebuild_all(lake_dir, days[-1], client, whole)
    assert out["feeds_built"] > 0
    assert graph_part(dump(client, step), step.keys.prefix) == graph_part(dump(client, whole), whole.keys.prefix)
    # Home reads agree for viewers active on both days
    now = day_end_ms(days[-1])
    both = sorted(set(active_viewers(lake_dir, days[-2], step.feed.ttl_days))
                  & set(active_viewers(lake_dir, days[-1], 1)))
    assert len(both) > 20
    def home(cfg, v):  # a deleted post stays cached until read (tombstone); a rebuild never adds it
        cands = HomeCandidateReader(client, cfg).read(v, now).candidates
        return {c.post_id for c in default_chain(client, cfg, seen=False).run(v, cands, now).kept}

    for v in map(int, both[:60]):
        assert home(step, v) == home(whole, v), v


def test_one_viewer_rebuilt_from_the_lake(redis_server, tiny):
    lake_dir, days = tiny
    client = redis.Redis.from_url(redis_server.url)
    cfg = fresh_config(celebrity_followers=None)
    rebuild_all(lake_dir, days[-1], client, cfg)
    viewers = active_viewers(lake_dir, days[-1], 1)
    keys = cfg.keys
    for v in map(int, viewers[:5]):
        before = dump(client, cfg)
        for a in client.smembers(keys.following(v)):
            client.srem(keys.followers(int(a)), v)
        client.delete(keys.following(v), keys.celeb_followees(v), keys.feed(v))
        rebuild_viewer(lake_dir, days[-1], client, cfg, v)
        after = dump(client, cfg)
        assert after == before


def test_redis_restart_mid_fanout_loses_and_duplicates_nothing(tiny, tmp_path):
    lake_dir, days = tiny
    with EmbeddedRedis(data_dir=tmp_path / "valkey", persist=True) as server:
        client = redis.Redis.from_url(server.url)
        # small batches, so the outage lands mid-run; the clean run uses the same batching (within a
        # batch graph events go before posts, which may leave a deleted post cached differently)
        small = FanoutConfig(batch_events=10, retry_base_s=0.1, retry_max_attempts=20)
        clean, faulty = (fresh_config(celebrity_followers=None).model_copy(update={"fanout": small}) for _ in range(2))
        for cfg in (clean, faulty):
            rebuild_all(lake_dir, days[-2], client, cfg)
        FanoutWorker(client, clean).run_day(lake_dir, days[-1])

        worker = FanoutWorker(client, faulty)
        result = {}
        thread = threading.Thread(target=lambda: result.update(stats=worker.run_day(lake_dir, days[-1])))
        thread.start()
        ckpt = faulty.keys.checkpoint("lake")
        deadline = time.monotonic() + 600  # generous: a busy machine is slow, not broken
        while time.monotonic() < deadline:  # stop the server once a few batches are committed
            try:
                if int(client.hget(ckpt, "offset") or 0) >= 30 and client.hget(ckpt, "day") == days[-1].encode():
                    break
            except redis.RedisError:
                pass
            time.sleep(0.002)
        stopped_at = int(client.hget(ckpt, "offset"))
        server.stop()
        time.sleep(0.5)
        server.start()
        thread.join(timeout=120)
        stats = result["stats"]
        assert stats.retries >= 1, "the outage did not hit the run"
        assert stats.reconciles and stats.applied + sum(stats.skipped.values()) == stats.events
        assert stopped_at < stats.events
        assert (graph_part(dump(client, faulty), faulty.keys.prefix)
                == graph_part(dump(client, clean), clean.keys.prefix))

        def feeds(cfg):
            return {k.removeprefix(cfg.keys.prefix): v for k, v in dump(client, cfg).items() if ":feed:" in k}

        assert feeds(faulty) == feeds(clean)
