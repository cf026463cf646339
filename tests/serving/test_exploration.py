"""The exploration share: a seeded share of requests served in a random order of the chosen page,
each served (post, position) logged with its propensity under the mixed policy, the frequencies
the log implies matching the ones served, and the privacy filters untouched (only kept, selected
posts are reordered; the hypothesis property in test_service_http.py runs with every page explored)."""

from __future__ import annotations

import json

import numpy as np
import pytest
import redis

from candidate_gen.block import CandidateBlock
from candidate_gen.records import Candidate
from serving.config import ServingConfig
from serving.impression_log import ImpressionLogWriter
from serving.model_store import ModelStore
from serving.pipeline import Deadline, FeedQuery, FeedState, drain_side_effects
from serving.stages.exploration_shuffle_selector import ExplorationShuffleSelector, page_propensities
from serving.stages.selectors import TopKSelector
from tests.candidates.helpers import HOUR, T0
from tests.serving.helpers import build_app, serving_config, social_world, write_world

NOW = T0 + 10 * HOUR


def query(limit: int) -> FeedQuery:
    return FeedQuery("r", "explore", 1, limit, 1_000_000, Deadline(50))


def scored(n: int) -> FeedState:
    """n candidates, post ids 1..n, scored so that the base order is 1, 2, ..., n."""
    return FeedState(candidates=CandidateBlock.of(Candidate(i + 1, 100 + i, 1_000 + i, "trending") for i in range(n)),
                     scores=np.arange(n, 0, -1, dtype=np.float64))


def served(selector: ExplorationShuffleSelector, n: int, limit: int) -> tuple[list[int], np.ndarray | None]:
    st = scored(n)
    selector.run(query(limit), st)
    return [st.candidates[i].post_id for i in st.selected], st.propensities


def test_the_share_of_explored_requests_and_their_propensities():
    share, k = 0.2, 10
    selector = ExplorationShuffleSelector(TopKSelector(), share, np.random.default_rng(11))
    base = list(range(1, k + 1))
    stay, move = (1 - share) + share / k, share / k
    explored = 0
    for _ in range(3000):
        posts, p = served(selector, 30, k)
        assert sorted(posts) == base  # the page itself never changes: only its order
        expected = np.where(np.array(posts) == np.arange(1, k + 1), stay, move)
        np.testing.assert_allclose(p, expected)  # marginal under the mixture, explored or not
        explored += posts != base
    # Binomial(3000, 0.2): mean 600, sd 22; an identity permutation among explored is ~1e-7
    assert 520 < explored < 680


def test_the_logged_propensities_are_the_served_frequencies():
    share, k, n = 0.5, 4, 20_000
    selector = ExplorationShuffleSelector(TopKSelector(), share, np.random.default_rng(3))
    counts = np.zeros((k, k))  # post (base position) x served position
    logged = np.zeros((k, k))
    for _ in range(n):
        posts, p = served(selector, 6, k)
        for pos, post in enumerate(posts):
            counts[post - 1, pos] += 1
            logged[post - 1, pos] = p[pos]
    # every (post, position) pair was served, and the logged propensity is its frequency
    assert (counts > 0).all()
    np.testing.assert_allclose(counts / n, logged, atol=0.015)
    # each post is somewhere, each position holds someone: both margins sum to one
    np.testing.assert_allclose(logged.sum(axis=0), 1.0)
    np.testing.assert_allclose(logged.sum(axis=1), 1.0)
    assert page_propensities(share, k, np.arange(k)).tolist() == [0.625] * k  # nothing moved


def test_no_share_no_randomness_and_no_propensity():
    selector = ExplorationShuffleSelector(TopKSelector(), 0.0, np.random.default_rng(0))
    for _ in range(50):
        posts, p = served(selector, 12, 5)
        assert posts == [1, 2, 3, 4, 5] and p is None
    one = ExplorationShuffleSelector(TopKSelector(), 0.3, np.random.default_rng(0))
    posts, p = served(one, 1, 5)
    assert posts == [1] and p.tolist() == [1.0]  # a page of one: certain
    empty = FeedState()
    one.run(query(5), empty)
    assert len(empty.selected) == 0 and empty.propensities is None


def test_a_failed_selection_serves_the_fallback_with_no_propensity():
    class Failing(TopKSelector):
        def run(self, query, state):
            raise RuntimeError("boom")

    selector = ExplorationShuffleSelector(Failing(), 1.0, np.random.default_rng(0))
    st = scored(5)
    st.propensities = np.ones(3)
    with pytest.raises(RuntimeError):
        selector.run(query(3), st)
    selector.fallback(query(3), st)
    assert st.propensities is None and len(st.selected) == 3
    assert selector.name == "select"  # one step of the declared pipeline, under its usual name


def test_the_share_is_configured_and_checked():
    assert ServingConfig.load().exploration.share == 0.05
    with pytest.raises(ValueError, match=r"exploration\.share"):
        ServingConfig.from_dict({"exploration": {"share": 1.5}})
    with pytest.raises(ValueError, match="unknown keys"):
        ServingConfig.from_dict({"exploration": {"rate": 0.1}})
    with pytest.raises(ValueError, match="in \\[0, 1\\]"):
        ExplorationShuffleSelector(TopKSelector(), -0.1)


def test_explored_pages_keep_the_filters_and_log_their_propensities(redis_server, tmp_path):
    """The real app on real Valkey: viewer 1 blocked author 3 and muted author 4; with half the
    pages explored, neither ever appears, the page is a permutation of the unexplored one, and every
    impression line carries the propensity of its (post, position)."""
    client = redis.Redis.from_url(redis_server.url)
    # generous budgets: this test is about order and filters, not latency on a busy machine
    slow_ok = {"timeout_ms": 10_000.0}
    sources = ("in_network", "trending", "embedding", "social", "popular")
    cfg = serving_config({"sources": {s: slow_ok for s in sources}},
                         impressions={"record_seen": False}, exploration={"share": 0.5, "seed": 5},
                         budget={"total_ms": 30_000.0})
    rows = social_world() + [(T0 - 10 * HOUR, "block", 1, 3, 0), (T0 - 10 * HOUR, "mute", 1, 4, 0)]
    write_world(client, cfg, rows)
    models = ModelStore(lambda name: None, None, cfg.model, cfg.cascade, "/nonexistent")
    base_app = build_app(client, cfg.with_("exploration", share=0.0), models, now_ms=NOW)
    author = {r[2]: r[3] for r in rows if r[1] == "post"}
    with ImpressionLogWriter(tmp_path / "landing", "t", flush_interval_s=0.05) as writer:
        app = build_app(client, cfg, models, impressions=writer, now_ms=NOW)
        base = base_app.feed("home", 1, 8)
        base_posts = [i["post_id"] for i in base["items"]]
        assert len(base_posts) == 8, {k: base[k] for k in ("degraded_reasons", "candidates", "filtered")}
        orders = set()
        for _ in range(12):
            body = app.feed("home", 1, 8)
            posts = [i["post_id"] for i in body["items"]]
            assert sorted(posts) == sorted(base_posts)  # the same kept, selected posts
            assert not {author[p] for p in posts} & {3, 4}  # blocked and muted authors stay out
            orders.add(tuple(posts))
        assert len(orders) > 1
        assert drain_side_effects(timeout_s=600) and writer.flush()  # impressions are logged off the request thread
    lines = [json.loads(line) for f in (tmp_path / "landing").rglob("*.jsonl") for line in f.read_text().splitlines()]
    assert len(lines) == 12 * 8
    base_position = {p: k for k, p in enumerate(base_posts)}
    for line in lines:
        stays = base_position[line["post_id"]] == line["position"]
        assert line["propensity"] == pytest.approx(0.5 + 0.5 / 8 if stays else 0.5 / 8)
    client.delete(*client.keys(cfg.candidates.keys.pattern) or ["-"])
