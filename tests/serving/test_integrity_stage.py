"""The integrity stage: each content label's outcome, stricter out of network; drops counted, downranks
scaled, interstitials flagged; an experiment's arm can switch it; unread labels degrade, never drop."""

from __future__ import annotations

import numpy as np
import pytest
import redis

from candidate_gen.block import CandidateBlock
from candidate_gen.config import IntegrityConfig
from candidate_gen.integrity import Labels, write_labels
from serving.experiment import CONTROL, TREATMENT
from serving.pipeline import Deadline, FeedQuery, FeedState
from serving.stages.integrity_filter_stage import IntegrityFilterStage
from tests.candidates.helpers import HOUR
from tests.candidates.helpers import T0 as T
from tests.serving.helpers import build_app, explore_sets, serving_config, write_world
from tests.serving.test_service_http import no_registry

T0 = 1_790_000_000_000
CFG = IntegrityConfig()  # spam: downrank / drop; borderline: allow / downrank; sensitive: interstitial both


def query(arm: str = CONTROL) -> FeedQuery:
    return FeedQuery("r", "home", 1, 10, T0, Deadline(50.0), arm=arm)


def state(labels: dict[int, frozenset[str]] | None) -> FeedState:
    # posts 1-4 by followed authors (in network), 11-14 suggested (trending); scores one sign and another
    block = CandidateBlock.concat([CandidateBlock.build([1, 2, 3, 4], [5, 6, 7, 8], T0, "in_network", 0.0),
                                   CandidateBlock.build([11, 12, 13, 14], [5, 6, 7, 8], T0, "trending", 0.0)])
    s = FeedState(candidates=block, labels=labels)
    s.scores = np.array([1.0, 2.0, -1.0, 4.0, 1.0, 2.0, -1.0, 4.0])
    s.features = np.zeros((8, 2), np.float32)
    return s


LABELS = {1: frozenset({"spam"}), 11: frozenset({"spam"}), 2: frozenset({"borderline"}),
          12: frozenset({"borderline"}), 3: frozenset({"sensitive", "spam"}), 13: frozenset({"sensitive"})}


def test_each_label_takes_its_outcome_and_out_of_network_is_stricter():
    s = state(LABELS)
    IntegrityFilterStage(CFG).run(query(), s)
    assert s.candidates.post.tolist() == [1, 2, 3, 4, 12, 13, 14]  # 11: spam out of network, dropped
    assert s.features.shape == (7, 2) and s.removed["integrity"] == 1
    d = CFG.downrank
    # 1: spam followed -> downranked; 2: borderline followed -> allowed; 3: spam + sensitive followed ->
    # downranked (a negative score is divided: it still goes down) and covered; 12: borderline suggested
    # -> downranked; 13: sensitive -> covered
    assert s.scores.tolist() == pytest.approx([1.0 * d, 2.0, -1.0 / d, 4.0, 2.0 * d, -1.0, 4.0])
    assert s.interstitials == {3: "sensitive", 13: "sensitive"}
    assert dict(s.rescored) == {("integrity", "drop"): 1, ("integrity", "downrank"): 3,
                                ("integrity", "interstitial"): 2}


def test_a_drop_wins_over_the_other_outcomes():
    s = state({13: frozenset({"sensitive", "spam"})})
    IntegrityFilterStage(CFG).run(query(), s)
    assert 13 not in s.candidates.post.tolist() and s.interstitials == {}
    assert dict(s.rescored) == {("integrity", "drop"): 1}


@pytest.mark.parametrize("enabled", [True, False])
@pytest.mark.parametrize("knob", [None, True, False])
def test_an_arm_can_switch_it(enabled, knob):
    stage = IntegrityFilterStage(CFG.changed(enabled=enabled), treatment=knob)
    for arm, on in ((CONTROL, enabled), (TREATMENT, enabled if knob is None else knob)):
        s = state(LABELS)
        stage.run(query(arm), s)
        assert (s.removed["integrity"] == 1) is on and bool(s.interstitials) is on, (arm, enabled, knob)


def test_unread_labels_degrade_and_remove_nothing():
    s = state(None)
    IntegrityFilterStage(CFG).run(query(), s)
    assert len(s.candidates) == 8 and s.degraded == {"integrity": "labels unread"}
    quiet = state({})
    IntegrityFilterStage(CFG).run(query(), quiet)
    assert len(quiet.candidates) == 8 and not quiet.degraded and not quiet.rescored


# --- through the service ----------------------------------------------------------------------------
@pytest.mark.integration
def test_the_service_serves_each_labels_outcome_and_counts_the_drops(redis_server, http_for):
    """Viewer 1 follows author 7 (spam: downranked) and author 8 (whose post 181 is sensitive:
    covered); author 9's posts come by Explore, and 9 is spam there: dropped, counted as `integrity`."""
    client = redis.Redis.from_url(redis_server.url)
    cfg = serving_config().with_("impressions", enabled=False, record_seen=False)
    rows = [(T - 100 * HOUR, "user", u, 0, 0) for u in (1, 7, 8, 9)]
    rows += [(T - 50 * HOUR, "follow", 1, a, 0) for a in (7, 8)]
    rows += [(T + k * HOUR, "post", 100 + 10 * a + k, a, T + k * HOUR) for a in (7, 8, 9) for k in range(3)]
    write_world(client, cfg, rows)
    explore_sets(client, cfg, [(100 + 90 + k, 9) for k in range(3)])
    keys = cfg.candidates.keys
    write_labels(client, keys, Labels({181: {"sensitive"}}, {7: {"spam"}, 9: {"spam"}}))
    app = build_app(client, cfg, no_registry(cfg), now_ms=T + 10 * HOUR)
    http = http_for(app)
    try:
        home = http.post("/v1/feed/home", json={"viewer_id": 1, "limit": 20}).json()
        items = {i["post_id"]: i for i in home["items"]}
        assert not {190, 191, 192} & set(items) and home["filtered"]["integrity"] == 3
        assert items[181]["interstitial"] == "sensitive" and items[180]["interstitial"] is None
        assert {p for p in items if 170 <= p < 180} == {170, 171, 172}  # spam but followed: served, lower
        spam, clean = max(items[p]["score"] for p in (170, 171, 172)), min(items[p]["score"] for p in (180, 182))
        assert spam < clean
        ranked = http.post("/v1/rank", json={"viewer_id": 1, "surface": "home", "post_ids": [190, 180]}).json()
        assert [i["post_id"] for i in ranked["items"]] == [180]  # the caller cannot lift a drop
    finally:
        client.delete(keys.integrity_posts, keys.integrity_accounts)
