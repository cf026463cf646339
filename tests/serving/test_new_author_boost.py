"""The new-author boost: an author below `threshold` impressions in 28 days has their posts' scores
raised by 1 + strength * (1 - impressions / threshold), up whatever the score's sign; an author with
no feature row is unknown, not new; a request whose authors show no impression at all (an export
without an impressions log) is left alone; an experiment's treatment arm can switch it."""

from __future__ import annotations

import tomllib

import numpy as np
import pytest
import redis

from candidate_gen.block import CandidateBlock
from data.typed_config import ConfigError
from data.vocabulary import load_vocabulary
from features.feature_repo.definitions import build_repo
from features.services import RANKING_SERVICES
from features.tables import AUTHOR
from serving.config import DEFAULT_PATH, ArmConfig, NewAuthorBoostConfig, ServingConfig
from serving.experiment import CONTROL, TREATMENT
from serving.metrics import RESCORED
from serving.pipeline import Deadline, FeedQuery, FeedState
from serving.stages.new_author_boost_rescorer import IMPRESSIONS, NewAuthorBoostRescorer, boost_factors
from tests.candidates.helpers import HOUR, T0
from tests.serving.helpers import build_app, explore_sets, serving_config, write_world
from tests.serving.test_service_http import no_registry

CFG = NewAuthorBoostConfig(enabled=True)  # threshold 1000, strength 0.5 (off by default)
NAN = float("nan")
OTHER = "viewer_author__is_following"  # any other hydrated column


def state_of(impressions: list[float], scores: list[float], names: tuple[str, ...] = (OTHER, IMPRESSIONS)) -> FeedState:
    """One candidate per author 7, 8, ..., with that author's impressions_28d (NaN: no row)."""
    n = len(scores)
    block = CandidateBlock.build(np.arange(100, 100 + n), np.arange(7, 7 + n), np.full(n, T0), "in_network", 0.0)
    features = np.column_stack([np.ones(n), impressions]).astype(np.float32)
    return FeedState(candidates=block, scores=np.array(scores, dtype=np.float64), feature_names=names,
                     features=features)


def query(arm: str = CONTROL) -> FeedQuery:
    return FeedQuery("r", "home", 1, 10, T0, Deadline(50.0), arm=arm)


def outcomes(state: FeedState) -> dict[str, int]:
    return {outcome: n for (stage, outcome), n in state.rescored.items() if stage == "new_author_boost"}


# --- the factor ------------------------------------------------------------------------------------
def test_authors_below_the_threshold_are_lifted_less_as_they_are_seen_and_none_from_it_on():
    state = state_of([0.0, 250.0, 500.0, 999.0, 1000.0, 50_000.0], [2.0] * 6)
    NewAuthorBoostRescorer(CFG).run(query(), state)
    assert state.scores.tolist() == pytest.approx([3.0, 2.75, 2.5, 2.0 * (1 + 0.5 * 0.001), 2.0, 2.0])
    assert outcomes(state) == {"boosted": 4}
    assert boost_factors(np.array([0.0, 600.0, 1200.0]), 1200.0, 1.0).tolist() == pytest.approx([2.0, 1.5, 1.0])


def test_a_negative_score_is_raised_too_toward_zero_never_past_a_positive_one():
    state = state_of([0.0, 500.0, 5000.0, 0.0], [-3.0, -3.0, -3.0, 0.0])
    NewAuthorBoostRescorer(CFG).run(query(), state)
    assert state.scores.tolist() == pytest.approx([-2.0, -3.0 / 1.25, -3.0, 0.0])
    mixed = state_of([0.0, 5000.0], [-0.1, 0.01])
    NewAuthorBoostRescorer(CFG.changed(strength=100.0)).run(query(), mixed)
    assert mixed.scores[0] < 0 < mixed.scores[1]  # `scaled` keeps the sign: a boost reorders within it


def test_an_author_with_no_feature_row_is_unknown_not_new():
    state = state_of([NAN, 0.0, 2000.0], [2.0, 2.0, 2.0])
    NewAuthorBoostRescorer(CFG).run(query(), state)
    assert state.scores.tolist() == pytest.approx([2.0, 3.0, 2.0])
    assert outcomes(state) == {"unknown_author": 1, "boosted": 1}


@pytest.mark.parametrize("impressions", [[0.0, 0.0, 0.0], [0.0, NAN, 0.0], [NAN, NAN, NAN]])
def test_no_author_seen_at_all_as_on_an_export_without_an_impressions_log_boosts_nobody(impressions):
    """features.optional_logs: an absent impressions log reads as empty, every author's count is 0. A
    boost would then lift every known author over the unknown ones on no evidence."""
    state = state_of(impressions, [2.0, -1.0, 0.5])
    NewAuthorBoostRescorer(CFG).run(query(), state)
    assert state.scores.tolist() == [2.0, -1.0, 0.5]
    assert outcomes(state) == {"no_signal": 3}


def test_one_seen_author_in_the_request_is_signal_enough():
    state = state_of([0.0, 0.0, 1.0], [2.0, 2.0, 2.0])
    NewAuthorBoostRescorer(CFG).run(query(), state)
    assert state.scores.tolist() == pytest.approx([3.0, 3.0, 2.0 * (1 + 0.5 * 0.999)])


def test_without_features_or_without_the_column_the_scores_stay():
    unhydrated = state_of([0.0, 5000.0], [2.0, 2.0])
    unhydrated.features, unhydrated.feature_names = None, ()
    NewAuthorBoostRescorer(CFG).run(query(), unhydrated)
    assert unhydrated.scores.tolist() == [2.0, 2.0] and outcomes(unhydrated) == {"not_hydrated": 2}

    other = state_of([0.0, 5000.0], [2.0, 2.0], names=(OTHER, "author__follower_count"))
    NewAuthorBoostRescorer(CFG).run(query(), other)
    assert other.scores.tolist() == [2.0, 2.0] and outcomes(other) == {"no_feature": 2}

    empty = FeedState(scores=np.zeros(0))
    NewAuthorBoostRescorer(CFG).run(query(), empty)
    assert not empty.rescored


def test_strength_zero_or_disabled_changes_nothing():
    for cfg in (CFG.changed(strength=0.0), CFG.changed(enabled=False)):
        state = state_of([0.0, 5000.0], [2.0, -2.0])
        NewAuthorBoostRescorer(cfg).run(query(), state)
        assert state.scores.tolist() == [2.0, -2.0]


@pytest.mark.parametrize("treatment", [None, True, False])
def test_an_experiments_treatment_arm_can_turn_the_boost_off_or_on(treatment):
    for control_on in (True, False):
        rescorer = NewAuthorBoostRescorer(CFG.changed(enabled=control_on), treatment)
        for arm, on in ((CONTROL, control_on), (TREATMENT, control_on if treatment is None else treatment)):
            state = state_of([0.0, 5000.0], [2.0, 2.0])
            rescorer.run(query(arm), state)
            assert state.scores.tolist() == pytest.approx([3.0 if on else 2.0, 2.0]), (arm, control_on, treatment)


# --- configuration -----------------------------------------------------------------------------------
def test_the_shipped_config_and_the_treatment_knob_parse():
    with open(DEFAULT_PATH, "rb") as f:
        shipped = tomllib.load(f)["new_author_boost"]
    assert NewAuthorBoostConfig.parse(shipped, "serving config") == NewAuthorBoostConfig()
    assert NewAuthorBoostConfig() == CFG.changed(enabled=False)  # off until an A/B has measured it
    assert (CFG.threshold, CFG.strength) == (1000.0, 0.5)
    assert ServingConfig.load().new_author_boost == NewAuthorBoostConfig()
    arm = ArmConfig.parse({"new_author_boost": False}, "serving config")
    assert arm.new_author_boost is False and arm.describe() == {"new_author_boost": "False"}
    assert ArmConfig().new_author_boost is None
    for bad in ({"threshold": 0}, {"strength": -0.1}, {"treshold": 10}):
        with pytest.raises(ConfigError):
            NewAuthorBoostConfig.parse(bad, "serving config")


def test_every_ranking_feature_service_serves_the_authors_impressions(tmp_path):
    """The count the boost reads is hydrated with the model's features, under this column name."""
    assert IMPRESSIONS == f"{AUTHOR.name}__impressions_28d" and "impressions_28d" in AUTHOR.features
    repo = build_repo(tmp_path, load_vocabulary())
    for name in RANKING_SERVICES:
        service = getattr(repo, name)
        served = {f"{p.name}__{f.name}" for p in service.feature_view_projections for f in p.features}
        assert IMPRESSIONS in served, name


# --- in the service --------------------------------------------------------------------------------
NOW = T0 + 10 * HOUR
VIEWER, NEW, SEEN, UNKNOWN = 1, 7, 8, 9
IMPRESSIONS_OF = {NEW: 0.0, SEEN: 5000.0}  # UNKNOWN: no author row


class AuthorRows:
    """The hydrator of these tests: the author view's impressions_28d per candidate (NaN for an author
    without a row), as the packed reader hands it to the state."""

    name = "hydrate"

    def run(self, query, state) -> None:
        state.feature_names = (OTHER, IMPRESSIONS)
        imps = [IMPRESSIONS_OF.get(a, NAN) for a in state.candidates.author.tolist()]
        state.features = np.column_stack([np.zeros(len(imps)), imps]).astype(np.float32)

    def fallback(self, query, state) -> None:
        state.features = None


@pytest.fixture
def world(redis_server):
    """Viewer 1 follows authors 7 (new), 8 (seen 5,000 times) and 9 (no row), who posted at the same
    instants (the heuristic, no champion, gives the three the same scores before rescoring)."""
    client = redis.Redis.from_url(redis_server.url)
    rows = [(T0 - 100 * HOUR, "user", u, 0, 0) for u in (VIEWER, NEW, SEEN, UNKNOWN)]
    rows += [(T0 - 50 * HOUR, "follow", VIEWER, a, 0) for a in (NEW, SEEN, UNKNOWN)]
    rows += [(T0 + k * HOUR, "post", 100 + 10 * a + k, a, T0 + k * HOUR) for a in (NEW, SEEN, UNKNOWN)
             for k in range(2)]
    return client, rows


def page_of(client, rows, surface: str = "home", enabled: bool = True,
            **experiment) -> tuple[dict[int, dict[int, float]], str]:
    """{author: {k: score of their k-th post}} of the viewer's page, and the viewer's arm."""
    cfg = serving_config(new_author_boost={"enabled": enabled}).with_("impressions", enabled=False,
                                                                       record_seen=False)
    if experiment:
        cfg = cfg.model_copy(update={"experiment": cfg.experiment.changed(enabled=True, **experiment)})
    write_world(client, cfg, rows)
    explore_sets(client, cfg, [(r[2], r[3]) for r in rows if r[1] == "post"])  # Explore's: the same posts
    app = build_app(client, cfg, no_registry(cfg), hydrator=AuthorRows(), now_ms=NOW)
    body = app.feed(surface, VIEWER, 20)
    scores: dict[int, dict[int, float]] = {}
    for item in body["items"]:
        scores.setdefault(item["author_id"], {})[item["post_id"] % 10] = item["score"]
    return scores, body["arm"]


@pytest.mark.parametrize("surface", ["home", "explore"])
def test_the_service_lifts_the_new_authors_posts_on_home_and_explore_and_counts_them(world, surface):
    client, rows = world
    counted = RESCORED.labels(surface, "new_author_boost", "boosted")
    before = counted._value.get()
    scores, arm = page_of(client, rows, surface)
    assert arm == CONTROL and set(scores) == {NEW, SEEN, UNKNOWN} and all(len(s) == 2 for s in scores.values())
    for k in range(2):
        assert scores[NEW][k] / scores[SEEN][k] == pytest.approx(1.5)
        assert scores[UNKNOWN][k] == pytest.approx(scores[SEEN][k])  # no row: not boosted
    assert counted._value.get() - before == 2


@pytest.mark.parametrize(("enabled", "knob", "share", "boosted"), [
    (False, True, 1.0, True), (False, True, 0.0, False), (False, None, 1.0, False),
    (True, False, 1.0, False), (True, False, 0.0, True), (True, None, 1.0, True)])
def test_the_treatment_arm_switches_the_boost_in_the_service(world, enabled, knob, share, boosted):
    client, rows = world
    treatment = {} if knob is None else {"new_author_boost": knob}
    scores, arm = page_of(client, rows, enabled=enabled, treatment_share=share, name="boost-ab",
                          treatment=ArmConfig.parse(treatment, "serving config"))
    assert arm == (TREATMENT if share == 1.0 else CONTROL)
    assert scores[NEW][0] / scores[SEEN][0] == pytest.approx(1.5 if boosted else 1.0)


def test_home_and_explore_declare_the_boost_after_fatigue_and_before_the_page_shaping_rescorers(world):
    client, _ = world
    cfg = serving_config()
    app = build_app(client, cfg, no_registry(cfg), hydrator=AuthorRows(), now_ms=NOW)
    # the labels' outcomes first (a downrank scales the model's score), then the author-level rescorers
    assert [s.name for s in app.home.rescorers] == ["integrity", "fatigue", "new_author_boost", "out_of_network",
                                                    "author_diversity"]
    assert [s.name for s in app.explore.rescorers] == ["integrity", "fatigue", "new_author_boost", "author_diversity"]
    assert [s.name for s in app.ranker.rescorers] == ["integrity"]  # /v1/rank: the caller composes the page


def test_the_served_feature_block_carries_each_authors_impressions(platform):
    """On the tiny world materialized as production does it: the serving feature service's block holds
    every known author's impressions_28d, and NaN (missing) for an author without a row."""
    from data.days import day_start
    from features.online.ranking import RankingFeatureReader
    from features.services import SERVICE_V2

    served, store, _, viewers, _, next_day = platform
    reader = RankingFeatureReader(store, SERVICE_V2, client=redis.Redis.from_url(served.redis_url))
    authors = np.array([*viewers, 10**12], dtype=np.int64)  # the active viewers post too; one nobody
    block = reader.read(np.full(len(authors), viewers[0]), authors, np.zeros(len(authors), dtype=np.int64),
                        day_start(next_day).timestamp())
    col = block.names.index(IMPRESSIONS)
    imps = block.values[:, col]
    assert np.isnan(imps[-1]) and block.missing[-1, col]
    assert np.isfinite(imps[:-1]).all() and (imps[:-1] > 0).any()
