"""A graph-only export (accounts, follows, posts; an empty engagements log, no impressions or blocks
log at all) goes through the online path: feature snapshots -> feast apply -> online refresh with its
checks -> candidates rebuild, trending, social, embeddings, without an error. The embedding source
is switched off with the reason (asset metadata, and `disabled` at request time); every account
that follows someone has a Home cache; viewers_with_followees samples them."""

from __future__ import annotations

import dagster as dg
import numpy as np
import pytest
import redis

from candidate_gen.config import CandidateConfig
from candidate_gen.explore.embeddings import load as load_embeddings
from candidate_gen.home import HomeCandidateReader
from candidate_gen.reads import StepReader
from candidate_gen.sources.base import DISABLED, SourceRequest, run_sources
from candidate_gen.sources.embedding_source import EmbeddingSource
from candidate_gen.viewers import follow_edges, viewers_with_followees
from data.days import day_end_ms
from data.ingest.partition import ingest_partition
from data.settings import Settings
from pipelines.defs.candidates.assets import (
    candidates_embeddings,
    candidates_rebuild,
    candidates_social,
    candidates_trending,
    embeddings_dir,
)
from pipelines.defs.features.assets import feast_online, feast_registry, feature_assets
from pipelines.partitions import materialize_day, register_days
from pipelines.resources import build_resources
from tests.builders import follow, post, user, write_jsonl

DAYS = ("2026-10-02", "2026-10-03")
N_USERS = 40
LONERS = (37, 38, 39, 40)  # follow nobody


def graph_only_export(landing) -> None:
    """Users 1..40 on the first day; 1..36 follow the next five (wrapping inside 1..36), everyone but
    the loners follows 1 and 2; each of 1..36 posts twice a day; user 3 is private: of the requests
    from 34, 35, 36, 1 and 2, only 34's is approved."""
    first, last = DAYS
    write_jsonl(landing, "users", first, [user(u, f"{first}T00:00:{u % 60:02d}.000Z", is_private=(u == 3))
                                          for u in range(1, N_USERS + 1)])
    write_jsonl(landing, "users", last, [])
    edges = [(u, (u + k - 1) % 36 + 1) for u in range(1, 37) for k in range(1, 6)]
    edges += [(u, c) for u in range(3, 37) for c in (1, 2) if (u, c) not in edges]
    rows = [follow(a, b, f"{first}T01:00:00.000Z") for a, b in edges]
    rows.append(follow(34, 3, f"{first}T02:00:00.000Z", "approve"))
    write_jsonl(landing, "follows", first, rows)
    write_jsonl(landing, "follows", last, [])
    for d, day in enumerate(DAYS):
        write_jsonl(landing, "posts", day, [post(1000 * (d + 1) + 10 * u + k, u, f"{day}T{8 + k:02d}:00:00.000Z")
                                            for u in range(1, 37) for k in range(2)])
        write_jsonl(landing, "engagements", day, [])  # the export has this log, empty


@pytest.fixture(scope="module")
def graph_only(spark, tmp_path_factory, redis_server):
    home = tmp_path_factory.mktemp("graph_only")
    settings = Settings(home=home / "loupe", source="landing", landing=home / "landing", world="tiny")
    graph_only_export(settings.landing_dir)
    for day in DAYS:
        for log in ("users", "follows", "posts", "engagements"):  # no impressions, no blocks log at all
            assert ingest_partition(spark, log, day, settings.landing_dir, settings.lake_dir).reconciles
    redis_url = redis_server.url.rsplit("/", 1)[0] + "/9"
    redis.Redis.from_url(redis_url).flushdb()
    yield settings, build_resources(settings, redis_url), redis.Redis.from_url(redis_url)
    redis.Redis.from_url(redis_url).flushdb()


def test_a_graph_only_export_reaches_the_online_store_and_candidates(graph_only):
    settings, resources, client = graph_only
    day = DAYS[-1]
    with dg.DagsterInstance.ephemeral() as instance:
        register_days(instance, list(DAYS))
        features = materialize_day(feature_assets, partition_key=day, instance=instance, resources=resources)
        rows = {e.asset_key.path[-1]: e.materialization.metadata["dagster/row_count"].value
                for e in features.get_asset_materialization_events()}
        assert rows["viewer_tags"] == 0 and rows["viewer"] == N_USERS and rows["viewer_author"] > 0
        assert materialize_day([feast_registry], instance=instance, resources=resources).success
        online = materialize_day([feast_online], partition_key=day, instance=instance, resources=resources)
        checks = {c.check_name: c for c in online.get_asset_check_evaluations()}
        assert checks["online_matches_offline"].passed, checks["online_matches_offline"].metadata
        meta = online.get_asset_materialization_events()[0].materialization.metadata
        assert meta["written"].value["viewer_tags"] == 0 and meta["written"].value["viewer_author"] > 0

        rebuilt = materialize_day([candidates_rebuild], instance=instance, resources=resources,
                                 run_config={"ops": {"candidates__rebuild": {"config": {"day": day}}}})
        explore = materialize_day([candidates_trending, candidates_social, candidates_embeddings],
                                 partition_key=day, instance=instance, resources=resources)
    out = {e.asset_key.path[-1]: {k: v.value for k, v in e.materialization.metadata.items()}
           for r in (rebuilt, explore) for e in r.get_asset_materialization_events()}

    # Home caches: every account that follows someone, none of the loners (nobody to read)
    cfg = CandidateConfig.load()
    followers = viewers_with_followees(settings.lake_dir, day, N_USERS)
    assert sorted(followers.tolist()) == list(range(1, 37))
    assert out["rebuild"]["feeds_built"] >= len(followers)
    reader = HomeCandidateReader(client, cfg)
    for v in followers.tolist():
        assert client.exists(cfg.keys.feed(v)), v
        read = reader.read(int(v), now_ms=day_end_ms(day))
        assert not read.built and read.candidates, v

    # Explore builders: nothing to rank, nothing published, no error
    assert out["trending"] and out["social"]
    # embeddings: switched off, with the reason, and the source says so at request time
    assert "no positive engagements" in out["embeddings"]["disabled"]
    model = load_embeddings(embeddings_dir(resources["candidates_dir"], day))
    assert model.disabled and len(model.author_ids) == 0
    (outcome,) = run_sources([EmbeddingSource(cfg, model)], SourceRequest(int(followers[0]), day_end_ms(day)),
                             StepReader(client))
    assert outcome.status == DISABLED and "no positive engagements" in outcome.error


def test_viewers_with_followees_samples_only_accounts_that_follow_someone(graph_only):
    settings, _, _ = graph_only
    edges = follow_edges(settings.lake_dir, DAYS[-1])
    pairs = set(zip(edges["follower_id"].tolist(), edges["followee_id"].tolist()))
    assert (34, 3) in pairs and (35, 3) not in pairs  # a private account: approved requests only
    assert len(pairs) == 180 - 4 + 59  # the ring less 4 pending requests, plus the extra follows of 1 and 2
    some = viewers_with_followees(settings.lake_dir, DAYS[-1], 5)
    assert len(some) == 5 and len(set(some.tolist())) == 5
    assert set(some.tolist()) <= set(edges["follower_id"].tolist())
    assert not set(some.tolist()) & set(LONERS)
    assert np.array_equal(some, viewers_with_followees(settings.lake_dir, DAYS[-1], 5))  # same sample
    assert len(viewers_with_followees(settings.lake_dir, "2026-10-01", 5)) == 0  # before any follow

