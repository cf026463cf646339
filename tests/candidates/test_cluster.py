"""Candidate generation on a real three-primary Valkey cluster gives what one server gives.

The same generated world (accounts, requests, approvals, privacy changes, blocks, mutes, posts,
deletions, in random batch sizes) is applied by the fan-out worker to one server and to a
cluster, with some Home caches built before and others at read. Every key then holds the same
content on both, and every viewer's Home read, its filtered page, and the windows read over many
accounts' sets are the same. The privacy property on a cluster is in test_privacy_properties.
"""

from __future__ import annotations

import numpy as np
import redis
from hypothesis import HealthCheck, given, settings
from hypothesis import strategies as st

from candidate_gen import events as ev
from candidate_gen.config import FanoutConfig
from candidate_gen.fanout import FanoutWorker
from candidate_gen.filters import default_chain
from candidate_gen.home import HomeCandidateReader
from candidate_gen.reads import Reads, StepReader
from candidate_gen.rebuild import build_feeds
from candidate_gen.records import Candidate
from data.redis_client import connect, is_cluster
from tests.candidates.helpers import HOUR, T0, dump, fresh_config
from tests.candidates.privacy_oracle import N_USERS, action, to_events, user_ids


def apply_world(client, cfg, rows, built) -> None:
    FanoutWorker(client, cfg).consume(ev.frame(rows[:N_USERS]), None)
    build_feeds(client, cfg, sorted(built), T0)
    client.sadd(cfg.keys.celebs, 1)  # user 1 is pulled at read, the others fanned out
    FanoutWorker(client, cfg).consume(ev.frame(rows[N_USERS:]), None)


def page(block) -> list[tuple]:
    return sorted(zip(block.post.tolist(), block.author.tolist(), block.created_ms.tolist(),
                      block.source.tolist(), strict=True))


@settings(max_examples=15, deadline=None, suppress_health_check=[HealthCheck.function_scoped_fixture])
@given(private=st.sets(user_ids, max_size=4), actions=st.lists(action, min_size=1, max_size=60),
       batch=st.integers(1, 25), built=st.sets(user_ids))
def test_a_world_on_a_cluster_matches_one_server(redis_server, redis_cluster, private, actions, batch, built):
    one, cluster = redis.Redis.from_url(redis_server.url), connect(redis_cluster.url)
    assert is_cluster(cluster) and not is_cluster(one)
    cfg = fresh_config(celebrity_followers=3).model_copy(update={"fanout": FanoutConfig(batch_events=batch)})
    rows, oracle = to_events(private, actions)
    for client in (one, cluster):
        apply_world(client, cfg, rows, built)
    assert dump(cluster, cfg) == dump(one, cfg)

    now = T0 + 100 * HOUR
    everything = [Candidate(p, a, T0, "trending") for p, a in oracle.author.items()]
    for viewer in range(1, N_USERS + 1):
        reads = [HomeCandidateReader(c, cfg).read(viewer, now) for c in (one, cluster)]
        assert page(reads[1].candidates) == page(reads[0].candidates)
        assert reads[1].built == reads[0].built
        kept = [default_chain(c, cfg, seen=False).run(viewer, everything, now).kept for c in (one, cluster)]
        assert sorted(c.post_id for c in kept[1]) == sorted(c.post_id for c in kept[0])
    assert dump(cluster, cfg) == dump(one, cfg)  # the reads built the same missing caches
    for client in (one, cluster):
        client.delete(*client.keys(cfg.keys.pattern) or ["-"])


def test_windows_over_many_accounts_come_back_in_key_order(redis_server, redis_cluster):
    """The windows read splits its keys by slot on a cluster and stitches the rows back together:
    every window's rows in its keys' order, each key's newest first, as one server returns them."""
    cfg = fresh_config()
    keys = [cfg.keys.author_posts(a) for a in range(1, 41)]
    one, cluster = redis.Redis.from_url(redis_server.url), connect(redis_cluster.url)
    for client in (one, cluster):
        for a, key in enumerate(keys, start=1):
            if a % 7:  # some accounts have no posts
                client.zadd(key, {f"{1000 * a + i}:{a}": T0 + 10 * i for i in range(a % 5 + 1)})
    reads = [Reads().window(keys, "+inf", T0 + 10, 3), Reads().window([], "+inf", "-inf", 5),
             Reads().window(keys[::-3], "+inf", "-inf", 2).command("exists", keys[0])]
    got = [StepReader(c).execute(reads) for c in (one, cluster)]
    for want, have in zip(*got, strict=True):
        assert have.commands == want.commands
        for w, h in zip(want.windows, have.windows, strict=True):
            for field in ("post", "author", "scores", "counts"):
                np.testing.assert_array_equal(getattr(h, field), getattr(w, field))
    assert sum(len(w) for w in got[1][0].windows) > 0
    for client in (one, cluster):
        client.delete(*keys)
