"""One celebrity rule: on the tiny world, the author feature job (Spark, `is_celebrity`) and the
candidates rebuild (Redis, the accounts pulled at read instead of fanned out) name the same accounts,
with a rule loose enough to give a set worth comparing and with the shipped rule."""

from __future__ import annotations

import numpy as np
import redis

from candidate_gen.rebuild import rebuild_all
from features.celebrity import CelebrityRule
from features.jobs import author
from tests.candidates.helpers import fresh_config


def feature_celebrities(spark, lake_dir, day, rule=None) -> set[int]:
    rows = author.compute(spark, lake_dir, day, rule).where("is_celebrity = 1").select("author_id").collect()
    return {int(r["author_id"]) for r in rows}


def test_features_and_candidates_name_the_same_celebrities(tiny_lake, spark, redis_server):
    settings, summary, _ = tiny_lake
    day = summary.days[-1]
    client = redis.Redis.from_url(redis_server.url)
    loose = {"percentile": 95.0, "min_followers": 10}
    cfg = fresh_config(celebrity_followers=None).with_celebrity(**loose)
    out = rebuild_all(settings.lake_dir, day, client, cfg)
    pulled = {int(u) for u in client.smembers(cfg.keys.celebs)}
    assert len(pulled) >= 10 and out["celebrities"] == len(pulled)
    assert feature_celebrities(spark, settings.lake_dir, day, CelebrityRule(**loose)) == pulled

    # the shipped rule, on the follower counts the rebuild left in Redis
    users = sorted(int(u) for u in client.smembers(cfg.keys.users))
    pipe = client.pipeline(transaction=False)
    for u in users:
        pipe.scard(cfg.keys.followers(u))
    counts = np.array(pipe.execute())
    shipped = CelebrityRule.load()
    threshold = shipped.threshold(counts)
    assert fresh_config(celebrity_followers=None).celebrity == shipped
    assert feature_celebrities(spark, settings.lake_dir, day) == {u for u, n in zip(users, counts) if n >= threshold}
