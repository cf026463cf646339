"""Feedback fatigue: a "see fewer" (or "not interested", hide, report) reaches the viewer's fatigue set
from the stream within a poll and from the lake by the daily build, once however often it comes; the
rescorer then lowers that author's posts for that viewer only, less as the push ages."""

from __future__ import annotations

import json
import math
from dataclasses import replace

import numpy as np
import pyarrow as pa
import pyarrow.parquet as pq
import pytest
import redis

from candidate_gen.block import CandidateBlock
from candidate_gen.fanout import FanoutWorker
from candidate_gen.fatigue import (
    FatigueConfig,
    PushAway,
    build_fatigue,
    fatigue_member,
    hashtag_pressure,
    pressures,
    record,
)
from candidate_gen.reads import StepReader
from candidate_gen.search.post_text_index import PostText, PostTextIndex, SearchIndexReader
from candidate_gen.sources.catalog import build_sources
from candidate_gen.stream_events import Unreadable, push_away
from candidate_gen.stream_fanout import FanoutStreamConsumer
from data import lake
from data.contracts import ENGAGEMENTS
from data.days import day_end_ms, day_of_ms, iso_ms
from data.ids import to_id
from data.redis_server import EmbeddedRedis
from data.stream.entries import Event
from data.stream.valkey_stream import ValkeyStream
from serving.pipeline import Deadline, FeedQuery, FeedState
from serving.post_hashtags import PostHashtags
from serving.stages.candidate_sources_stage import CandidateSourcesStage, SourceGroup
from serving.stages.fatigue_rescorer import FatigueRescorer
from tests.candidates.helpers import HOUR, T0, fresh_config

CFG = FatigueConfig()


@pytest.fixture
def client(redis_server):
    return redis.Redis.from_url(redis_server.url)


def engagement(viewer, post, author, kind: str, ts_ms: int, event_id: str | None = None) -> str:
    return json.dumps({"event_id": event_id or f"{viewer}-{post}-{kind}-{ts_ms}", "viewer_id": viewer,
                       "post_id": post, "author_id": author, "type": kind, "ts": iso_ms(ts_ms), "surface": "home"})


def kept(client, keys, viewer: int) -> list[tuple[bytes, float]]:
    return client.zrange(keys.fatigue(viewer), 0, -1, withscores=True)


# --- the state -------------------------------------------------------------------------------------
def test_record_is_idempotent_ignores_own_posts_and_keeps_the_newest_within_the_window(client):
    keys = fresh_config().keys
    cfg = CFG.changed(cap=3, window_days=1.0)
    events = [PushAway(1, 7, 100, "see_fewer", T0), PushAway(1, 1, 101, "hide", T0),  # own post
              PushAway(1, 7, 102, "like", T0)]  # not a push-away type
    assert record(client, keys, events, cfg) == 1
    assert record(client, keys, events, cfg) == 0  # delivered again: nothing new
    assert kept(client, keys, 1) == [(fatigue_member(7, 100, "see_fewer"), float(T0))]
    later = [PushAway(1, 8, 200 + k, "not_interested", T0 + 25 * HOUR + k) for k in range(4)]
    record(client, keys, later, cfg)
    assert [m for m, _ in kept(client, keys, 1)] == [fatigue_member(8, 201 + k, "not_interested") for k in range(3)]
    assert 0 < client.ttl(keys.fatigue(1)) <= 86_400


def test_pressure_adds_up_per_author_and_per_post_and_halves_every_half_life():
    cfg = CFG.changed(half_life_hours=10.0, strength=1.0)
    now = T0 + 20 * HOUR
    entries = [(fatigue_member(7, 1, "see_fewer"), T0 + 20 * HOUR), (fatigue_member(7, 2, "hide"), T0 + 10 * HOUR),
               (fatigue_member(8, 3, "not_interested"), T0), (fatigue_member(9, 4, "unknown"), now),
               (fatigue_member(5, 5, "see_fewer"), now - cfg.window_ms - 1)]  # beyond the window
    pressure = pressures(entries, now, cfg)
    assert pressure.authors == pytest.approx({7: 1.0 + 0.5, 8: 0.5 * 0.25})
    assert pressure.posts == pytest.approx({1: 1.0, 2: 0.5, 3: 0.5 * 0.25})


def test_posts_like_the_pushed_away_ones_are_pressed_by_the_mean_over_their_hashtags():
    pushed = {1: 1.0, 2: 0.5}
    tags_of = {1: ["cats", "cute"], 2: ["cats"], 10: ["cats", "cute"], 11: ["cute", "dogs", "pets", "walk"],
               12: ["dogs"], 13: []}
    got = hashtag_pressure(pushed, tags_of, [10, 11, 12, 13, 14])
    # cats 1.5, cute 1.0; a post made of them is pressed most, one sharing a tag of four a little
    assert got.tolist() == pytest.approx([(1.5 + 1.0) / 2, 1.0 / 4, 0.0, 0.0, 0.0])
    assert hashtag_pressure({3: 1.0}, tags_of, [10]).tolist() == [0.0]  # the pushed post is not indexed


# --- from the stream ---------------------------------------------------------------------------------
def test_a_see_fewer_line_is_judged_by_ingestions_rules_and_mapped_as_ingestion_maps_ids():
    day = day_of_ms(T0)
    assert push_away(engagement(1, 100, 7, "see_fewer", T0), day, {"see_fewer"}) == PushAway(1, 7, 100, "see_fewer", T0)
    assert push_away(engagement(1, 100, 7, "like", T0), day, {"see_fewer"}) is None
    assert push_away("{not json", day, {"see_fewer"}) is None  # not a push-away: the feature worker's to judge
    team = engagement("u-anna", "p-9", "u-bob", "see_fewer", T0)
    assert push_away(team, day, {"see_fewer"}) == PushAway(to_id("u-anna"), to_id("u-bob"), to_id("p-9"),
                                                           "see_fewer", T0)
    with pytest.raises(Unreadable, match="ts_in_future"):
        push_away(engagement(1, 100, 7, "see_fewer", T0 + 3 * 86_400_000), day, {"see_fewer"})


def test_a_see_fewer_on_the_stream_reaches_the_viewers_fatigue_at_the_next_poll(client, tmp_path):
    cfg = fresh_config()
    keys = cfg.keys
    with EmbeddedRedis(data_dir=tmp_path / "stream", durable=True) as server:
        stream = ValkeyStream.connect(server.url, partitions=2)
        consumer = FanoutStreamConsumer(stream, FanoutWorker(client, cfg, name="stream"))
        lines = [engagement(1, 100, 7, "see_fewer", T0, "e1"), engagement(1, 101, 7, "like", T0, "e2"),
                 engagement(1, 102, 8, "see_fewer", T0 + 3 * 86_400_000, "e3")]  # dated days ahead
        stream.append([Event("engagements", line, "1") for line in lines], at_ms=T0)
        stats = consumer.poll()
        assert (stats.entries, stats.applied, stats.push_aways, stats.ignored, dict(stats.dead_lettered)) == (
            3, 1, 1, 1, {"ts_in_future": 1})
        assert stats.reconciles
        assert kept(client, keys, 1) == [(fatigue_member(7, 100, "see_fewer"), float(T0))]
        consumer.close()


# --- from the lake -----------------------------------------------------------------------------------
def land_engagements(lake_dir, day: str, rows: list[tuple]) -> None:
    """(viewer, post, author, type, ts_ms) rows as a written lake partition of `day`."""
    table = pa.Table.from_pylist([
        {"event_id": f"e{k}", "viewer_id": v, "post_id": p, "author_id": a, "type": t, "value": None,
         "ts": pa.scalar(ts, pa.timestamp("ms", tz="UTC")).as_py(), "surface": "home", "request_id": None}
        for k, (v, p, a, t, ts) in enumerate(rows)], schema=ENGAGEMENTS.schema)
    path = lake.partition_dir(lake_dir, "engagements", day)
    path.mkdir(parents=True)
    pq.write_table(table, path / "part-0.parquet")
    (path / "_SUCCESS").touch()


def test_the_daily_build_reads_the_windows_push_aways_as_of_the_days_end(client, tmp_path):
    keys = fresh_config().keys
    day = day_of_ms(T0)
    end = day_end_ms(day)
    cfg = CFG.changed(window_days=2.0)
    land_engagements(tmp_path, day, [(1, 100, 7, "see_fewer", end - HOUR), (1, 101, 7, "like", end - HOUR),
                                     (2, 102, 8, "report", end - 2 * HOUR), (3, 103, 9, "hide", end + HOUR)])
    land_engagements(tmp_path, "2020-01-01", [(4, 104, 9, "hide", T0)])  # outside the window: not read
    stats = build_fatigue(tmp_path, day, client, cfg, keys)
    assert (stats["days_read"], stats["push_aways"], stats["added"], stats["viewers"]) == (1, 2, 2, 2)
    assert kept(client, keys, 1) == [(fatigue_member(7, 100, "see_fewer"), float(end - HOUR))]
    assert kept(client, keys, 3) == []  # dated after the day's end
    assert build_fatigue(tmp_path, day, client, cfg, keys)["added"] == 0  # again: nothing twice


# --- the rescorer ------------------------------------------------------------------------------------
def state_of(authors: list[int], scores: list[float]) -> FeedState:
    n = len(authors)
    block = CandidateBlock.build(np.arange(100, 100 + n), np.array(authors), np.full(n, T0), "in_network", 0.0)
    return FeedState(candidates=block, scores=np.array(scores, dtype=np.float64))


def query(viewer: int, now_ms: int) -> FeedQuery:
    return FeedQuery("r", "home", viewer, 10, now_ms, Deadline(50.0))


def test_the_rescorer_lowers_the_pushed_authors_posts_for_that_viewer_only_less_as_the_push_ages(client):
    keys = fresh_config().keys
    cfg = CFG.changed(half_life_hours=24.0)
    record(client, keys, [PushAway(1, 7, 100, "see_fewer", T0)], cfg)
    rescorer = FatigueRescorer(client, keys, cfg)

    state = state_of([7, 8, 7], [2.0, 2.0, -1.0])
    rescorer.run(query(1, T0), state)
    assert state.scores.tolist() == pytest.approx([2.0 * math.exp(-1), 2.0, -1.0 / math.exp(-1)])  # always lower

    later = state_of([7, 8], [2.0, 2.0])
    rescorer.run(query(1, T0 + 24 * HOUR), later)
    assert later.scores.tolist() == pytest.approx([2.0 * math.exp(-0.5), 2.0])

    other = state_of([7, 8], [2.0, 2.0])
    rescorer.run(query(2, T0), other)  # another viewer: untouched
    assert other.scores.tolist() == [2.0, 2.0]

    off = state_of([7], [2.0])
    FatigueRescorer(client, keys, cfg.changed(enabled=False)).run(query(1, T0), off)
    assert off.scores.tolist() == [2.0]


def test_posts_like_the_pushed_away_one_are_lowered_by_their_hashtags_from_the_search_index(client, tmp_path):
    keys = fresh_config().keys
    cfg = CFG.changed(hashtag_weight=0.5)
    record(client, keys, [PushAway(1, 7, 90, "see_fewer", T0)], cfg)
    with PostTextIndex(tmp_path / "posts.sqlite") as index:
        index.upsert([PostText(90, 7, T0, ["cats", "cute"], None), PostText(100, 8, T0, ["cats", "cute"], None),
                      PostText(101, 8, T0, ["cute", "dogs"], None), PostText(102, 8, T0, ["dogs"], None),
                      PostText(103, 7, T0, ["dogs"], None)])
    reader = SearchIndexReader(tmp_path / "posts.sqlite")
    state = state_of([8, 8, 8, 7], [2.0] * 4)  # posts 100..103
    FatigueRescorer(client, keys, cfg, hashtags=PostHashtags(reader)).run(query(1, T0), state)
    assert state.scores.tolist() == pytest.approx(
        [2.0 * math.exp(-0.5), 2.0 * math.exp(-0.25), 2.0, 2.0 * math.exp(-1)])
    assert state.degraded == {}
    reader.close()

    # without hashtags (weight 0), or without an index to read them from: the author's pressure only,
    # and for the missing index the response says why
    for rescorer in (FatigueRescorer(client, keys, cfg.changed(hashtag_weight=0.0), hashtags=PostHashtags(reader)),
                     FatigueRescorer(client, keys, cfg,
                                     hashtags=PostHashtags(SearchIndexReader(tmp_path / "absent.sqlite")))):
        state = state_of([8, 8, 8, 7], [2.0] * 4)
        rescorer.run(query(1, T0), state)
        assert state.scores.tolist() == pytest.approx([2.0, 2.0, 2.0, 2.0 * math.exp(-1)])
    assert state.degraded == {"fatigue": "hashtags: IndexMissing"}


def test_a_dead_fatigue_store_raises_for_the_runner_to_report_and_leaves_the_scores(tmp_path):
    keys = fresh_config().keys
    with EmbeddedRedis(data_dir=tmp_path / "gone") as server:
        url = server.url
    dead = redis.Redis.from_url(url, socket_timeout=0.5, socket_connect_timeout=0.5)
    state = state_of([7], [2.0])
    with pytest.raises(redis.ConnectionError):
        FatigueRescorer(dead, keys, CFG).run(query(1, T0), state)
    assert state.scores.tolist() == [2.0]


def test_the_fatigue_read_rides_the_sources_first_round_trip_and_is_read_alone_when_it_did_not(client, tmp_path):
    """With the sources' round trip carrying it, the rescorer needs no read of its own (its own
    client is dead here); when that round trip failed, it reads for itself (and fails: degraded)."""
    cfg = fresh_config()
    keys = cfg.keys
    client.zadd(keys.popular, {b"%d:%d" % (100 + a, a): 1.0 for a in (7, 8)})
    record(client, keys, [PushAway(1, 7, 100, "see_fewer", T0)], CFG)
    with EmbeddedRedis(data_dir=tmp_path / "gone") as server:
        gone = server.url
    dead = redis.Redis.from_url(gone, socket_timeout=0.5, socket_connect_timeout=0.5)
    rescorer = FatigueRescorer(dead, keys, CFG)
    popular = build_sources(client, cfg, None, ("popular",))["popular"]

    state = FeedState()
    CandidateSourcesStage([SourceGroup((popular,), 10)], StepReader(client), riders=(rescorer,)).run(
        query(1, T0), state)
    assert sorted(state.candidates.author.tolist()) == [7, 8] and set(state.rides) == {"fatigue"}
    state.scores = np.ones(len(state.candidates))
    rescorer.run(query(1, T0), state)
    assert dict(zip(state.candidates.author.tolist(), state.scores.tolist(), strict=True)) == pytest.approx(
        {7: math.exp(-1), 8: 1.0})

    failed = FeedState()
    fresh = build_sources(dead, cfg, None, ("popular",))["popular"]  # nothing cached: it must read
    CandidateSourcesStage([SourceGroup((fresh,), 10)], StepReader(dead), riders=(rescorer,)).run(
        query(1, T0), failed)
    assert failed.rides == {} and not len(failed.candidates)  # the sources failed open
    failed.scores = np.ones(0)
    rescorer.run(query(1, T0), failed)  # nothing to rescore: no read
    failed.candidates, failed.scores = state.candidates, np.ones(2)
    with pytest.raises(redis.ConnectionError):
        rescorer.run(query(1, T0), failed)


@pytest.mark.parametrize("treatment", [None, False, True])
def test_an_experiments_treatment_arm_can_turn_fatigue_off_or_on(client, treatment):
    keys = fresh_config().keys
    record(client, keys, [PushAway(1, 7, 100, "see_fewer", T0)], CFG)
    for control_on in (True, False):
        rescorer = FatigueRescorer(client, keys, CFG.changed(enabled=control_on), treatment)
        for arm, on in (("control", control_on), ("treatment", control_on if treatment is None else treatment)):
            state = state_of([7, 8], [2.0, 2.0])
            rescorer.run(replace(query(1, T0), arm=arm), state)
            assert state.scores.tolist() == pytest.approx([2.0 * math.exp(-1) if on else 2.0, 2.0]), (arm, control_on)
        assert rescorer.reads_any == (control_on or bool(treatment))
