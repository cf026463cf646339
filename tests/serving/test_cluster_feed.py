"""The ranking service on a three-primary Valkey cluster serves the pages it serves on one server.

The tiny world is built twice the way production builds it (features materialized by the Dagster
assets into Feast's online store and the packed view, candidate state from the candidates assets,
the same champions in a real MLflow registry): on one server, and on a cluster (`REDIS_URL` a
cluster node's). Both services, started from settings, answer every Home and Explore request with
the same posts in the same order and the same scores, from the champion, undegraded; `/v1/rank`
of the same posts reads the post index the same way too.
"""

from __future__ import annotations

import pytest

from data.redis_client import connect, is_cluster
from serving.app import RankingApp, wait_ready
from serving.config import ServingConfig
from tests.serving.helpers import patient


def served_app(platform) -> RankingApp:
    served, *_ = platform
    # no budget runs out; no random exploration order; served posts stay unseen (pages comparable)
    cfg = (patient(ServingConfig.load()).with_("impressions", record_seen=False)
           .with_("exploration", share=0.0).with_("model", engine="lightgbm"))
    app = RankingApp.from_settings(served, cfg)
    assert wait_ready(app, 180), app.models.status()
    return app


@pytest.mark.parametrize("surface", ["home", "explore"])
def test_a_feed_served_from_a_cluster_matches_one_server(platform, cluster_platform, surface):
    assert is_cluster(connect(cluster_platform[0].redis_url))
    viewers = platform[3]
    assert viewers == cluster_platform[3]
    one, cluster = served_app(platform), served_app(cluster_platform)
    try:
        ranked = 0
        for viewer in viewers[:15]:
            want, have = one.feed(surface, viewer, 10), cluster.feed(surface, viewer, 10)
            assert have["degraded"] == want["degraded"] == [], (have["degraded_reasons"], want["degraded_reasons"])
            assert have["model_version"].split(":")[0] == want["model_version"].split(":")[0]
            assert [i["post_id"] for i in have["items"]] == [i["post_id"] for i in want["items"]]
            # the two calls read the running service clock apart (seconds on a loaded box), and
            # feedback fatigue decays with it (~3e-6 of a pushed author's score a second)
            assert [i["score"] for i in have["items"]] == pytest.approx([i["score"] for i in want["items"]], rel=1e-4)
            assert have["candidates"] == want["candidates"]
            ranked += bool(want["items"])
            # /v1/rank: the caller's post ids (the page's, an unknown one) through the post index
            ids = [i["post_id"] for i in want["items"]] + [10**15]
            want, have = one.rank(surface, viewer, ids), cluster.rank(surface, viewer, ids)
            assert [i["post_id"] for i in have["items"]] == [i["post_id"] for i in want["items"]]
            assert have["not_rankable"] == want["not_rankable"] >= 1
        assert ranked >= 10
    finally:
        one.close()
        cluster.close()
