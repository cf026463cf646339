"""The embedding Explore source end to end: a tiny lake -> train -> publish -> real Valkey -> fetch."""

from __future__ import annotations

import uuid
from pathlib import Path

import numpy as np
import pyarrow as pa
import pyarrow.parquet as pq
import pytest
import redis

from candidate_gen.config import CandidateConfig, SourceConfig
from candidate_gen.explore import embeddings as emb
from candidate_gen.explore.configs import EmbeddingConfig
from candidate_gen.reads import StepReader
from candidate_gen.records import member
from candidate_gen.sources.base import SourceRequest, fetch
from candidate_gen.sources.embedding_source import EmbeddingSource
from data.days import DAY_MS

DAY = "2026-10-13"
NOW_MS = 1_792_000_000_000  # a request time; posts are placed relative to it
# Community A: viewers 1-30 engage with authors 101-110 (and viewer 1's own posts, author 1);
# community B: viewers 31-60 with authors 201-210.
A_VIEWERS, A_AUTHORS = range(1, 31), [1, *range(101, 111)]
B_VIEWERS, B_AUTHORS = range(31, 61), list(range(201, 211))


def write_engagements(lake: Path) -> None:
    rng = np.random.default_rng(3)
    rows = []
    for viewers, authors in ((A_VIEWERS, A_AUTHORS), (B_VIEWERS, B_AUTHORS)):
        for v in viewers:
            for a in rng.choice([x for x in authors if x != v], 5, replace=False):
                rows += [(v, int(a), "like", None), (v, int(a), "dwell", 12_000.0)]
    folder = lake / "engagements" / f"dt={DAY}"
    folder.mkdir(parents=True)
    n = len(rows)
    table = pa.table(
        {
            "event_id": [f"e{i}" for i in range(n)],
            "viewer_id": pa.array([r[0] for r in rows], pa.int64()),
            "post_id": pa.array(range(n), pa.int64()),
            "author_id": pa.array([r[1] for r in rows], pa.int64()),
            "type": [r[2] for r in rows],
            "value": pa.array([r[3] for r in rows], pa.float64()),
            "ts": pa.array([NOW_MS - DAY_MS] * n, pa.timestamp("ms", tz="UTC")),
            "surface": ["home"] * n,
            "request_id": [None] * n,
        }
    )
    pq.write_table(table, folder / "part-0.parquet")
    (folder / "_SUCCESS").touch()


@pytest.fixture(scope="module")
def trained(tmp_path_factory) -> tuple[emb.EmbeddingModel, Path]:
    lake = tmp_path_factory.mktemp("emb") / "lake"
    write_engagements(lake)
    cfg = with_embeddings(CandidateConfig.load())
    model = emb.train_embeddings(lake, DAY, cfg)
    folder = emb.save(model, lake.parent / "candidates" / "embeddings" / f"dt={DAY}")
    return emb.load(folder), folder


def with_embeddings(cfg: CandidateConfig, cap: int = 300) -> CandidateConfig:
    section = {"factors": 2, "min_author_viewers": 1, "nearest_authors": 5, "posts_per_author": 2}
    sources = {**cfg.sources, "embedding": SourceConfig(cap=cap)}
    return cfg.model_copy(update={"raw": {**cfg.raw, "embeddings": section}, "sources": sources})


@pytest.fixture
def world(redis_server, trained):
    """A fresh key prefix with published viewer vectors and hand-written author posts/follows."""
    model, _ = trained
    cfg = with_embeddings(CandidateConfig.load().with_feed(key_prefix=f"t-emb-{uuid.uuid4().hex[:8]}:"))
    client = redis.Redis.from_url(redis_server.url)
    assert emb.publish_viewer_vectors(model, client, cfg) == len(model.viewer_ids)
    keys = cfg.keys
    max_age = cfg.feed.max_age_ms
    for author in [*A_AUTHORS, *B_AUTHORS]:
        posts = {
            member(author * 1000 + 1, author): NOW_MS - 3_600_000 - author,  # recent
            member(author * 1000 + 2, author): NOW_MS - 2 * 3_600_000 - author,  # recent, older
            member(author * 1000 + 3, author): NOW_MS - 3 * 3_600_000,  # recent, 3rd: over 2/author
            member(author * 1000 + 4, author): NOW_MS - max_age - 1,  # too old
            member(author * 1000 + 5, author): NOW_MS + 60_000,  # after the request time
        }
        client.zadd(keys.author_posts(author), posts)
    client.sadd(keys.following(1), 101, 102)
    yield cfg, client, model
    client.delete(*client.keys(keys.pattern))
    client.close()


def request(viewer: int) -> SourceRequest:
    return SourceRequest(viewer_id=viewer, now_ms=NOW_MS)


def test_published_vectors_are_the_models_and_expire(world):
    cfg, client, model = world
    raw = client.get(cfg.keys.viewer_embedding(7))
    assert np.array_equal(emb.unpack_vector(raw), model.viewer_vector(7))
    assert 0 < client.ttl(cfg.keys.viewer_embedding(7)) <= EmbeddingConfig.of(cfg).viewer_ttl_s


def test_fetch_returns_recent_posts_of_similar_not_followed_authors(world):
    cfg, client, model = world
    out = fetch(EmbeddingSource(cfg, model), request(1), StepReader(client))
    assert out and all(c.source == "embedding" for c in out)
    authors = {c.author_id for c in out}
    assert authors <= set(A_AUTHORS) - {1, 101, 102}  # own community, never self or followees
    assert all(NOW_MS - cfg.feed.max_age_ms <= c.created_ms <= NOW_MS for c in out)
    assert {c.post_id % 1000 for c in out} == {1, 2}  # the 2 newest in-window posts of each author
    assert [c.score for c in out] == sorted((c.score for c in out), reverse=True)
    for a, b in zip(out, out[1:], strict=False):  # one author's posts: newest first
        if a.author_id == b.author_id:
            assert a.created_ms > b.created_ms


def test_fetch_respects_the_cap(world):
    cfg, client, model = world
    capped = with_embeddings(cfg, cap=3)
    out = fetch(EmbeddingSource(capped, model), request(40), StepReader(client))
    assert len(out) == 3 and {c.author_id for c in out} <= set(B_AUTHORS)


def test_cold_viewer_and_missing_model_give_nothing(world):
    cfg, client, model = world
    assert fetch(EmbeddingSource(cfg, model), request(999), StepReader(client)) == []
    assert fetch(EmbeddingSource(cfg, None), request(1), StepReader(client)) == []


def test_a_swapped_in_model_is_used_on_the_next_fetch(world, trained):
    cfg, client, model = world
    current: list[emb.EmbeddingModel | None] = [None]
    source = EmbeddingSource(cfg, lambda: current[0])
    assert fetch(source, request(40), StepReader(client)) == []
    current[0] = emb.load(trained[1])
    assert {c.author_id for c in fetch(source, request(40), StepReader(client))} <= set(B_AUTHORS)
