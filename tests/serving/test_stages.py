"""The pipeline's small components on tiny inputs: the cascade, rescorers, selectors, the runner's
fail-open behaviour, cursors and the config."""

from __future__ import annotations

from types import SimpleNamespace

import numpy as np
import pytest

from candidate_gen.block import CandidateBlock
from candidate_gen.records import Candidate
from serving.config import RenamedKeyError, ServingConfig
from serving.cursors import BadCursor, PageCursorSigner
from serving.pipeline import Deadline, FeedQuery, FeedState, RecommendationPipeline, run
from serving.scoring_model import ScoringModel, lightgbm_model
from serving.stages.author_diversity_rescorer import AuthorDiversityRescorer
from serving.stages.duplicate_post_dedupe import DuplicatePostDedupe
from serving.stages.feature_hydrator import PackedFeatureHydrator
from serving.stages.out_of_network_rescorer import OutOfNetworkRescorer
from serving.stages.selectors import HomeMixSelector, TopKSelector
from tests.serving.helpers import random_ranker

NAMES = [f"f{i}" for i in range(6)]


def query(limit=10, surface="home") -> FeedQuery:
    return FeedQuery("r", surface, 1, limit, 1_000_000, Deadline(50))


def cands(spec: list[tuple[int, str]]) -> CandidateBlock:
    """(author, source) per candidate; post ids 1.., newer first."""
    return CandidateBlock.of(Candidate(i + 1, a, 1_000_000 - i, s) for i, (a, s) in enumerate(spec))


@pytest.fixture(scope="module")
def model() -> ScoringModel:
    return lightgbm_model("m", "1", random_ranker(NAMES, trees=40), threads=1, first_stage_trees=5)


def test_cascade_scores_everything_with_the_full_model_when_few(model):
    x = np.random.default_rng(1).normal(size=(50, len(NAMES))).astype(np.float32)
    scores, scored = model.score(x, keep=50)
    np.testing.assert_allclose(scores, model.full(x))
    assert scored.tolist() == list(range(50))


def test_cascade_keeps_the_first_stages_best_and_ranks_them_with_the_full_model(model):
    x = np.random.default_rng(2).normal(size=(300, len(NAMES))).astype(np.float32)
    scores, scored = model.score(x, keep=40)
    first = model.first_stage(x)
    assert set(scored.tolist()) == set(np.argsort(-first)[:40].tolist())
    np.testing.assert_allclose(scores[scored], model.full(x[scored]))
    pruned = np.setdiff1d(np.arange(300), scored)
    assert scores[pruned].max() < scores[scored].min()  # pruned rows never outrank kept ones
    # the first stage is the full model's prefix: its order agrees with the full model's far above chance
    full = model.full(x)
    assert np.corrcoef(first, full)[0, 1] > 0.5


def test_author_diversity_decays_an_authors_later_posts():
    st = FeedState(candidates=cands([(7, "in_network"), (7, "in_network"), (7, "in_network"), (8, "in_network")]),
                   scores=np.array([4.0, 3.9, 3.8, 2.0]))
    AuthorDiversityRescorer(0.5, 0.25).run(query(), st)
    np.testing.assert_allclose(st.scores, [4.0, 3.9 * 0.625, 3.8 * 0.4375, 2.0])
    assert np.argsort(-st.scores).tolist() == [0, 1, 3, 2]  # 3.9 * 0.625 still beats 2.0; 3.8 * 0.4375 does not


def test_out_of_network_scaling_lowers_positive_and_negative_scores():
    st = FeedState(candidates=cands([(1, "in_network"), (2, "trending"), (3, "popular")]),
                   scores=np.array([1.0, 1.0, -1.0]))
    OutOfNetworkRescorer(0.5).run(query(), st)
    np.testing.assert_allclose(st.scores, [1.0, 0.5, -2.0])


def test_home_mix_caps_suggestions_and_fills_only_when_the_network_runs_dry():
    spec = [(i, "trending") for i in range(10)] + [(100 + i, "in_network") for i in range(4)]
    st = FeedState(candidates=cands(spec), scores=np.linspace(10, 1, 14))
    HomeMixSelector(0.3, fill=False).run(query(limit=10), st)
    chosen = [st.candidates[i].source for i in st.selected]
    assert chosen.count("trending") == 3 and chosen.count("in_network") == 4
    HomeMixSelector(0.3, fill=True).run(query(limit=10), st)
    assert len(st.selected) == 10
    assert [st.scores[i] for i in st.selected] == sorted((st.scores[i] for i in st.selected), reverse=True)


def test_dedupe_keeps_the_first_source():
    st = FeedState(candidates=CandidateBlock.of([Candidate(5, 1, 10, "in_network"), Candidate(5, 1, 10, "trending"),
                                                 Candidate(6, 1, 10, "trending")]))
    DuplicatePostDedupe().run(query(), st)
    assert [(c.post_id, c.source) for c in st.candidates] == [(5, "in_network"), (6, "trending")]
    assert st.removed == {"duplicate": 1}


class Boom:
    name = "score"

    def run(self, q, st):
        raise RuntimeError("boom")

    def fallback(self, q, st):
        st.scores = None


class Fixed:
    name = "sources"

    def run(self, q, st):
        st.candidates = cands([(1, "in_network"), (2, "in_network"), (3, "trending")])

    def fallback(self, q, st):
        st.candidates = CandidateBlock.empty()


class Nothing:
    def __init__(self, name):
        self.name = name

    def run(self, q, st):
        pass

    def fallback(self, q, st):
        pass


def test_a_failing_stage_is_reported_and_the_page_falls_back_to_newest_first():
    pipe = RecommendationPipeline("home", Fixed(), DuplicatePostDedupe(), Nothing("filters"), Nothing("hydrate"),
                                  Boom(), (), TopKSelector())
    st = run(pipe, query(limit=2))
    assert st.degraded == {"score": "error: RuntimeError"}
    assert st.scorer == "chronological"
    assert [st.candidates[i].post_id for i in st.selected] == [1, 2]  # newest first
    assert set(st.stage_ms) == {"sources", "dedupe", "filters", "hydrate", "score", "select"}


def test_cursors_round_trip_and_foreign_ones_are_refused():
    signer = PageCursorSigner("secret", ttl_s=60, max_offset=100)
    cursor = signer.issue(7, "home", 30, now_ms=1_000)
    assert signer.offset(cursor, 7, "home", now_ms=2_000) == 30
    assert signer.offset(None, 7, "home", now_ms=2_000) == 0
    assert signer.issue(7, "home", 100, now_ms=1_000) is None  # paging ends at max_offset
    other = PageCursorSigner("another secret", ttl_s=60, max_offset=100).issue(7, "home", 30, now_ms=1_000)
    for bad, viewer, surface, now in (("x", 7, "home", 2_000), ("e30", 7, "home", 2_000),
                                      ("eyJvIjogIjEifQ", 7, "home", 2_000), (other, 7, "home", 2_000),
                                      (cursor, 8, "home", 2_000), (cursor, 7, "explore", 2_000),
                                      (cursor, 7, "home", 61_001)):
        with pytest.raises(BadCursor):
            signer.offset(bad, viewer, surface, now)


def test_config_refuses_unknown_settings_and_merges_candidate_overrides(tmp_path):
    cfg = ServingConfig.load()
    assert cfg.candidates.source("in_network").cap == 500
    assert cfg.candidates.feed.key_prefix == "lp:"  # everything else from candidate_gen/config.toml
    with pytest.raises(ValueError, match="unknown keys"):
        ServingConfig.from_dict({"budget": {"total_ms": 50, "totl": 1}})
    with pytest.raises(ValueError, match="unknown sections"):
        ServingConfig.from_dict({"budgets": {}})
    with pytest.raises(ValueError, match=r"hydration\.reader"):
        ServingConfig.from_dict({"hydration": {"reader": "magic"}})


def test_config_refuses_a_renamed_key_by_its_new_name():
    """Home's out-of-network keys were explore_*: a config still using them is told what to write."""
    with pytest.raises(RenamedKeyError, match="explore_share is now out_of_network_share") as err:
        ServingConfig.from_dict({"home": {"explore_share": 0.2, "out_of_network_candidates": 400}})
    assert (err.value.section, err.value.renamed) == ("home", {"explore_share": "out_of_network_share"})
    assert isinstance(err.value, ValueError)  # callers that catch a bad config still catch it
    home = ServingConfig.from_dict({"home": {"out_of_network_share": 0.2}}).home
    assert (home.out_of_network_share, home.out_of_network_candidates) == (0.2, 500)


def test_cascade_keeps_enough_of_each_group_for_a_mixed_page(model):
    x = np.random.default_rng(4).normal(size=(400, len(NAMES))).astype(np.float32)
    groups = np.zeros(400, dtype=np.int8)
    groups[:30] = 1  # a small group (e.g. in-network) the first stage might otherwise prune away
    x[:30] -= 3.0  # ... and make it score low
    scores, scored = model.score(x, keep=60, groups=groups, min_per_group=20)
    assert (groups[scored] == 1).sum() == 20 and (groups[scored] == 0).sum() == 56
    np.testing.assert_allclose(scores[scored], model.full(x[scored]))


def test_the_explore_pool_takes_proportional_shares_of_distinct_posts():
    from serving.stages.candidate_sources_stage import proportional

    a = cands([(1, "trending")] * 10)  # posts 1..10
    b = CandidateBlock.of(Candidate(p, 2, 0, "popular") for p in (1, 2, 3, 20, 21, 22, 23, 24, 25, 26))  # 3 in a
    out = proportional({"trending": a, "popular": b}, {"trending": 1, "popular": 1}, 10)
    assert [c.post_id for c in out] == [1, 2, 3, 4, 5, 20, 21, 22, 23, 24]
    short = proportional({"trending": a.take(slice(0, 2)), "popular": b}, {"trending": 1, "popular": 1}, 8)
    assert len(short) == 8 and len({c.post_id for c in short}) == 8  # popular fills trending's share


def test_the_model_path_is_not_started_without_the_budget_it_needs():
    """Under load, admitted pages reached hydration with a few ms left, hydrated anyway and took
    2-5x their budget, only to be ranked by the heuristic (bench-overload): with less than
    `model_min_ms` left, hydration does not start, and the page says why."""
    reads = []

    class Reader:
        def read(self, viewers, authors, posts, now_s):
            reads.append(len(posts))
            return SimpleNamespace(names=["f0"], values=np.zeros((len(posts), 1), dtype=np.float32))

    hydrator = PackedFeatureHydrator(Reader(), min_ms=15.0)
    short = FeedState(candidates=cands([(1, "in_network"), (2, "popular")]))
    hydrator.run(FeedQuery("r", "home", 1, 10, 1_000_000, Deadline(14.0)), short)
    assert reads == [] and short.features is None
    assert short.degraded == {"hydrate": "budget too short for the model"}

    enough = FeedState(candidates=short.candidates)
    hydrator.run(FeedQuery("r", "home", 1, 10, 1_000_000, Deadline(1_000.0)), enough)
    assert reads == [2] and enough.features.shape == (2, 1) and enough.degraded == {}
