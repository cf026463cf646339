"""The service scores a value model with whichever heads training saved (a click-only team's one
head, or any subset of the vocabulary's), on both engines; with no champion it serves the heuristic
and says why (`heuristic_reason`)."""

from __future__ import annotations

import lightgbm as lgb
import numpy as np
import pytest

from candidate_gen.block import CandidateBlock
from candidate_gen.records import Candidate
from serving.arm_models import ArmModels
from serving.config import ServingConfig
from serving.heuristic import HeuristicScorer
from serving.model_store import NO_CHAMPION, REGISTRY_UNREACHABLE, ModelStore
from serving.pipeline import Deadline, FeedQuery, FeedState
from serving.scoring_model import compiled_model, lightgbm_model
from serving.stages.model_scorer import NO_CANDIDATES, ModelScorer
from training.models import VALUE_MODEL, Ranker

NAMES = ["f0", "f1", "f2"]


def value_model(weights: dict[str, float], seed: int = 0) -> Ranker:
    rng = np.random.default_rng(seed)
    x = rng.normal(size=(1500, len(NAMES))).astype(np.float32)
    params = {"objective": "binary", "num_leaves": 7, "verbose": -1, "num_threads": 1, "seed": seed}
    boosters = {head: lgb.train(params, lgb.Dataset(x, (x[:, k % 3] + rng.normal(size=len(x)) > 1).astype(int)), 15)
                for k, head in enumerate(weights)}
    return Ranker(VALUE_MODEL, NAMES, boosters, dict(weights))


@pytest.mark.parametrize("weights", [{"click": 1.0}, {"click": 1.0, "long_dwell": 0.5, "negative": -12.0}])
def test_any_saved_set_of_heads_scores_the_same_on_both_engines(weights, tmp_path):
    saved = Ranker.load(value_model(weights).save(tmp_path / "ranker"))
    assert saved.weights == weights and list(saved.boosters) == list(weights)
    x = np.random.default_rng(9).normal(size=(200, len(NAMES))).astype(np.float32)
    expected = sum(w * saved.boosters[h].predict(x) for h, w in weights.items())
    light = lightgbm_model("feed_ranker", "1", saved, threads=1, first_stage_trees=None)
    compiled = compiled_model("feed_ranker", "1", saved, tmp_path / "compiled", threads=1, first_stage_trees=None)
    np.testing.assert_allclose(light.full(x), expected, atol=1e-9)
    assert np.max(np.abs(compiled.full(x) - expected)) <= 1e-6


def scored_state(store: ModelStore, cfg: ServingConfig) -> FeedState:
    scorer = ModelScorer(ArmModels(store), HeuristicScorer(cfg.heuristic), cfg.cascade, cfg.budget)
    state = FeedState(candidates=CandidateBlock.of(Candidate(i + 1, 7, 1_000_000 - i, "in_network") for i in range(5)))
    scorer.run(FeedQuery("r", "home", 1, 5, 1_000_000, Deadline(50)), state)
    return state


def test_no_champion_serves_the_heuristic_and_says_so(tmp_path):
    cfg = ServingConfig.load()
    answered = []  # the registry's answers: none until it is reached, then "no version holds the alias"

    def lookup(name: str) -> str | None:
        if not answered:
            raise ConnectionError("registry down")
        return None

    store = ModelStore(lookup, lambda name, version: value_model({"click": 1.0}), cfg.model, cfg.cascade,
                       tmp_path / "compiled")
    store.refresh()
    state = scored_state(store, cfg)
    assert (state.model_version, state.heuristic_reason) == ("heuristic", REGISTRY_UNREACHABLE)
    answered.append(True)
    store.refresh()
    state = scored_state(store, cfg)
    assert state.model_version == "heuristic" and state.scorer == "heuristic"
    assert state.heuristic_reason == NO_CHAMPION and state.degraded == {}  # declared, not degraded
    assert len(state.scores) == 5


def test_an_empty_page_says_nothing_was_left_to_rank(tmp_path):
    """Before, an empty page said model_version heuristic with heuristic_reason null: no reason."""
    cfg = ServingConfig.load()
    store = ModelStore(lambda name: "1", lambda name, version: value_model({"click": 1.0}), cfg.model,
                       cfg.cascade.__class__(enabled=False), tmp_path / "compiled")
    store.refresh()
    scorer = ModelScorer(ArmModels(store), HeuristicScorer(cfg.heuristic), cfg.cascade, cfg.budget)
    state = FeedState()
    scorer.run(FeedQuery("r", "home", 1, 5, 1_000_000, Deadline(50)), state)
    assert state.heuristic_reason == NO_CANDIDATES and len(state.scores) == 0 and state.degraded == {}
