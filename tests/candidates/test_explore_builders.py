"""The Explore builders' frame computations on tiny hand-made frames: weights, windows, velocity
math, point in time (rows landed after the day, or dated after its end, are invisible), deletions."""

from __future__ import annotations

import numpy as np
import pandas as pd
import pytest

from candidate_gen.explore.configs import PopularConfig, SocialConfig, TrendingConfig
from candidate_gen.explore.frames import (
    event_weights,
    live_posts,
    popular_scores,
    post_tags,
    tag_trending,
    top_per_group,
    trending_scores,
    viewer_tag_weights,
    weighted_events,
)
from candidate_gen.explore.lake_reads import lookback_first_day
from candidate_gen.explore.social import recent_engaged, top_affinity
from data.days import DAY_MS, HOUR_MS, day_end_ms

DAY, PREV, NEXT = "2026-10-05", "2026-10-04", "2026-10-06"
END = day_end_ms(DAY)


def eng(rows: list[tuple]) -> pd.DataFrame:
    """(viewer, post, author, type, hours before the end of DAY[, value][, dt]) -> engagements."""
    out = []
    for r in rows:
        viewer, post, author, kind, hours = r[:5]
        value = r[5] if len(r) > 5 else (20_000.0 if kind == "dwell" else np.nan)
        dt = r[6] if len(r) > 6 else DAY
        out.append({"viewer_id": viewer, "post_id": post, "author_id": author, "type": kind,
                    "value": value, "ts_ms": END - int(hours * HOUR_MS), "dt": dt})
    frame = pd.DataFrame(out)
    frame["type"] = frame["type"].astype("category")
    return frame


def posts(rows: list[tuple]) -> pd.DataFrame:
    """(post, author, hours before the end of DAY created, tags[, deleted hours before end][, dt])."""
    out = []
    for r in rows:
        post, author, hours, tags = r[:4]
        deleted = r[4] if len(r) > 4 else None
        dt = r[5] if len(r) > 5 else DAY
        out.append({"post_id": post, "author_id": author, "created_ms": END - int(hours * HOUR_MS),
                    "hashtags": np.array(tags, dtype=object), "deleted_ms": np.nan, "dt": dt})
        if deleted is not None:
            out.append({**out[-1], "deleted_ms": float(END - int(deleted * HOUR_MS))})
    return pd.DataFrame(out)


def exact(**over) -> TrendingConfig:
    """No smoothing and no gate: scores are the raw velocity mix."""
    return TrendingConfig(**{"smoothing_events": 0.0, "min_events": 1, **over})


WEIGHTS = TrendingConfig().weights


def test_event_weights_types_and_long_dwell():
    frame = eng([(1, 1, 9, "like", 1), (1, 1, 9, "share", 1), (1, 1, 9, "dwell", 1, 9_999.0),
                 (1, 1, 9, "dwell", 1, 10_000.0), (1, 1, 9, "hide", 1), (1, 1, 9, "report", 1)])
    assert event_weights(frame, WEIGHTS).tolist() == [1.0, 4.0, 0.0, 0.5, -3.0, -10.0]
    assert event_weights(frame, {"like": 2.0}).tolist() == [2.0, 0, 0, 0, 0, 0]


def test_weighted_events_point_in_time_self_and_duplicates():
    frame = eng([
        (1, 1, 9, "like", 2),  # kept
        (2, 1, 9, "like", 3), (2, 1, 9, "like", 1),  # same viewer, post, type: the latest only
        (3, 1, 9, "like", 2, np.nan, NEXT),  # landed on D+1: unknown at the end of D
        (4, 1, 9, "like", -0.5),  # dated after the end of D (clock skew) though landed on D
        (9, 1, 9, "like", 2),  # the author's own
        (5, 1, 9, "like", 30),  # outside the 24 h span
        (6, 1, 9, "dwell", 2, 3_000.0),  # short dwell: no weight
        (7, 1, 9, "dwell", 5), (7, 1, 9, "dwell", 1, 3_000.0),  # a later short dwell keeps the long one
    ])
    out = weighted_events(frame, DAY, DAY_MS, WEIGHTS)
    got = sorted(zip(out["viewer_id"], out["ts_ms"], strict=True))
    assert got == [(1, END - 2 * HOUR_MS), (2, END - 1 * HOUR_MS), (7, END - 5 * HOUR_MS)]


def test_velocity_mix_of_windows():
    live = live_posts(posts([(1, 9, 20, ["a"])]), DAY, 7 * DAY_MS)
    frame = eng([(1, 1, 9, "like", 0.5), (2, 1, 9, "like", 0.5), (3, 1, 9, "comment", 3),
                 (4, 1, 9, "share", 12)])
    out = trending_scores(weighted_events(frame, DAY, DAY_MS, WEIGHTS), live, DAY, exact())
    # windows 1 h / 6 h / 24 h hold 2, 5 and 9 weighted events; mix 0.5, 0.3, 0.2 of per-hour rates
    expected = 0.5 * 2 / 1 + 0.3 * 5 / 6 + 0.2 * 9 / 24
    assert out["score"].tolist() == pytest.approx([expected])
    assert out["events"].tolist() == [4]
    smoothed = trending_scores(weighted_events(frame, DAY, DAY_MS, WEIGHTS), live, DAY,
                               TrendingConfig(smoothing_events=5.0, min_events=1))
    assert smoothed["score"].tolist() == pytest.approx([expected * 4 / 9])


def test_window_edges_and_custom_windows():
    live = live_posts(posts([(1, 9, 30, [])]), DAY, 7 * DAY_MS)
    frame = eng([(1, 1, 9, "like", 1.0), (2, 1, 9, "like", 1.01), (3, 1, 9, "like", 24.0),
                 (4, 1, 9, "like", 24.01)])
    cfg = exact(windows_hours=(1.0, 24.0), window_weights=(1.0, 1.0))
    out = trending_scores(weighted_events(frame, DAY, DAY_MS, WEIGHTS), live, DAY, cfg)
    # exactly 1 h old is inside the 1 h window, 24.01 h old is outside both
    assert out["score"].tolist() == pytest.approx([(1 / 1 + 3 / 24) / 2])


def test_a_burst_now_beats_the_same_count_spread_over_the_day_and_smoothing_tames_tiny_counts():
    live = live_posts(posts([(1, 9, 30, []), (2, 9, 30, []), (3, 9, 30, [])]), DAY, 7 * DAY_MS)
    rows = [(v, 1, 9, "like", 0.5) for v in range(10, 22)]  # 12 likes in the last hour
    rows += [(v, 2, 9, "like", 2 * (v - 30) + 1) for v in range(30, 42)]  # 12 likes over 24 h
    rows += [(50, 3, 9, "share", 0.2)]  # a single share right now
    out = trending_scores(weighted_events(eng(rows), DAY, DAY_MS, WEIGHTS), live, DAY,
                          TrendingConfig(min_events=1))
    assert out["post_id"].tolist() == [1, 2, 3]
    gated = trending_scores(weighted_events(eng(rows), DAY, DAY_MS, WEIGHTS), live, DAY,
                            TrendingConfig(min_events=2))
    assert gated["post_id"].tolist() == [1, 2]


def test_negative_engagements_pull_down_and_can_exclude():
    live = live_posts(posts([(1, 9, 5, []), (2, 9, 5, [])]), DAY, 7 * DAY_MS)
    frame = eng([*[(v, 1, 9, "like", 1) for v in (1, 2, 3, 4)], (5, 1, 9, "hide", 1),
                 (1, 2, 9, "like", 1), (2, 2, 9, "report", 1)])
    out = trending_scores(weighted_events(frame, DAY, DAY_MS, WEIGHTS), live, DAY, exact())
    assert out["post_id"].tolist() == [1]  # post 2 nets 1 - 10 < 0
    assert out["score"].tolist() == pytest.approx([0.5 * 1 + 0.3 * 1 / 6 + 0.2 * 1 / 24])  # 4 - 3
    assert out["events"].tolist() == [4]  # only positive events count toward the smoothing


def test_live_posts_age_deletion_and_point_in_time():
    frame = posts([
        (1, 9, 10, ["x"]),  # live
        (2, 9, 10, ["x"], 2),  # deleted before the end of DAY
        (3, 9, 10, ["x"], -1),  # deleted after the end: still live as of DAY
        (4, 9, 8 * 24, ["x"]),  # older than max age
        (5, 9, -2, ["x"], None, NEXT),  # created after the end of DAY (lands on D+1)
        (6, 9, 10, ["x"]),
    ])
    late_delete = frame.iloc[[-1]].assign(deleted_ms=float(END - HOUR_MS), dt=NEXT)
    frame = pd.concat([frame, late_delete], ignore_index=True)  # landed on D+1: unknown for D
    out = live_posts(frame, DAY, 7 * DAY_MS)
    assert sorted(out["post_id"]) == [1, 3, 6]
    assert sorted(live_posts(frame, DAY, None)["post_id"]) == [1, 3, 4, 6]
    assert sorted(live_posts(frame, NEXT, 7 * DAY_MS)["post_id"]) == [1, 5]  # 3 and 6 deleted by then


def test_deleted_posts_never_trend():
    frame = posts([(1, 9, 5, []), (2, 9, 5, [], 1)])
    live = live_posts(frame, DAY, 7 * DAY_MS)
    events = eng([(v, p, 9, "like", 2) for v in range(10, 20) for p in (1, 2)])
    out = trending_scores(weighted_events(events, DAY, DAY_MS, WEIGHTS), live, DAY, exact())
    assert out["post_id"].tolist() == [1]


def test_popular_is_a_48h_weighted_count_capped():
    live = live_posts(posts([(1, 9, 60, []), (2, 9, 60, []), (3, 9, 60, [])]), DAY, 7 * DAY_MS)
    frame = eng([(1, 1, 9, "like", 40), (2, 1, 9, "like", 40), (1, 2, 9, "share", 47),
                 (1, 3, 9, "save", 49), (3, 3, 9, "like", 1)])
    events = weighted_events(frame, DAY, 3 * DAY_MS, WEIGHTS)
    out = popular_scores(events, live, DAY, PopularConfig(window_hours=48, top_k=2))
    assert out["post_id"].tolist() == [2, 1]
    assert out["score"].tolist() == [4.0, 2.0]


def test_post_tags_lowercased_deduplicated():
    out = post_tags(posts([(1, 9, 1, ["Food", "#food", " Travel "]), (2, 9, 1, []), (3, 9, 1, ["x"])]))
    assert sorted(zip(out["post_id"], out["tag"], strict=True)) == [(1, "food"), (1, "travel"), (3, "x")]


def test_tag_trending_volume_and_top_k():
    scores = pd.DataFrame({"post_id": [1, 2, 3, 4], "author_id": [9, 9, 9, 9], "score": [4.0, 3.0, 2.0, 1.0]})
    tags = pd.DataFrame({"post_id": [1, 2, 3, 4, 1], "tag": ["a", "a", "a", "b", "c"]})
    out = tag_trending(scores, tags, TrendingConfig(min_tag_posts=1, tag_top_k=2))
    assert list(zip(out["tag"], out["post_id"], strict=True)) == [("a", 1), ("a", 2), ("b", 4), ("c", 1)]
    out = tag_trending(scores, tags, TrendingConfig(min_tag_posts=2, tag_top_k=5))
    assert set(out["tag"]) == {"a"}


def test_viewer_tags_weights_top_n_and_point_in_time():
    tags = post_tags(posts([(1, 9, 1, ["food", "travel"]), (2, 9, 1, ["food"]), (3, 9, 1, ["cats"]),
                            (4, 9, 1, ["dogs"])]))
    frame = eng([
        (1, 1, 9, "like", 5), (1, 2, 9, "comment", 5 * 24),  # food 1 + 3, travel 1
        (1, 3, 9, "like", 2), (1, 3, 9, "hide", 1),  # cats 1 - 3: dropped
        (1, 4, 9, "share", 29 * 24),  # older than 28 days
        (1, 4, 9, "share", 1, np.nan, NEXT),  # landed on D+1
        (2, 3, 9, "save", 1),
    ])
    events = weighted_events(frame, DAY, 28 * DAY_MS, WEIGHTS)
    out = viewer_tag_weights(events, tags, DAY, TrendingConfig(viewer_tags_n=5))
    assert list(zip(out["viewer_id"], out["tag"], out["weight"], strict=True)) == [
        (1, "food", 4.0), (1, "travel", 1.0), (2, "cats", 3.0)]
    top1 = viewer_tag_weights(events, tags, DAY, TrendingConfig(viewer_tags_n=1))
    assert list(zip(top1["viewer_id"], top1["tag"], strict=True)) == [(1, "food"), (2, "cats")]


def test_recent_engaged_cap_hidden_own_and_point_in_time():
    live = live_posts(posts([(p, 9, 10, []) for p in range(1, 8)] + [(8, 9, 10, [], 1)]), DAY, 7 * DAY_MS)
    frame = eng([
        (1, 1, 9, "like", 5), (1, 1, 9, "save", 2),  # latest positive: 2 h before the end
        (1, 2, 9, "dwell", 1, 3_000.0),  # short dwell: not an engagement
        (1, 3, 9, "like", 3), (1, 3, 9, "hide", 2),  # hidden afterwards
        (1, 4, 1, "like", 1),  # own post (author 1)
        (1, 5, 9, "like", 4 * 24),  # older than 3 days
        (1, 6, 9, "like", 1, np.nan, NEXT),  # landed on D+1
        (1, 7, 9, "dwell", 4), (1, 8, 9, "like", 1),  # 8 is deleted
        (2, 1, 9, "like", 1), (2, 7, 9, "like", 2), (2, 6, 9, "like", 3),
    ])
    kept, dropped = recent_engaged(frame, live, DAY, SocialConfig(engaged_days=3, engaged_cap=2))
    assert list(zip(kept["viewer_id"], kept["post_id"], kept["ts_ms"], strict=True)) == [
        (1, 1, END - 2 * HOUR_MS), (1, 7, END - 4 * HOUR_MS),
        (2, 1, END - HOUR_MS), (2, 7, END - 2 * HOUR_MS)]
    assert list(zip(dropped["viewer_id"], dropped["post_id"], strict=True)) == [(1, 3)]


def test_top_affinity_positive_top_n_never_self():
    pairs = pd.DataFrame({"viewer_id": [1, 1, 1, 1, 1, 2], "author_id": [2, 3, 4, 5, 1, 1],
                          "engagement_score_decayed": [1.0, 5.0, -2.0, 3.0, 9.0, 0.0]})
    out = top_affinity(pairs, SocialConfig(affinity_n=2))
    got = list(zip(out["viewer_id"], out["author_id"], out["score"], strict=True))
    assert got == [(1, 3, 5.0), (1, 5, 3.0)]


def test_configs_from_sections():
    cfg = TrendingConfig.from_section(
        {"windows_hours": [2, 12], "window_weights": [1, 1], "weights": {"like": 2.0}}
    )
    assert cfg.windows_hours == (2, 12) and cfg.weights["like"] == 2.0 and cfg.weights["share"] == 4.0
    assert cfg.longest_ms == 12 * HOUR_MS
    with pytest.raises(ValueError):
        TrendingConfig.from_section({"windows_hour": [1]})
    with pytest.raises(ValueError):
        TrendingConfig.from_section({"windows_hours": [1, 2], "window_weights": [1]})
    assert SocialConfig.from_section({"engaged_cap": 5}).engaged_cap == 5
    assert PopularConfig.from_section({}).window_hours == 48


def test_lookback_covers_the_span_plus_a_day_of_skew():
    assert lookback_first_day(DAY, DAY_MS) == "2026-10-03"
    assert lookback_first_day(DAY, 28 * DAY_MS) == "2026-09-06"


def test_top_per_group_orders_by_keys_and_keeps_n():
    frame = pd.DataFrame({"g": [2, 1, 2, 1, 1, 2], "s": [1.0, 5.0, 3.0, 5.0, 2.0, 3.0], "k": [1, 2, 3, 4, 5, 6]})
    out = top_per_group(frame, "g", [("s", False), ("k", True)], 2)
    assert list(zip(out["g"], out["k"], strict=True)) == [(1, 2), (1, 4), (2, 3), (2, 6)]
    assert top_per_group(frame.iloc[:0], "g", [("s", False)], 2).empty
