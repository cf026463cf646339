"""Integrity labels (candidate_gen/integrity.py): the rule set over events and account signals, the
labels' store (replaced whole each day), their read on the filter chain's round trip, and the
daily build from a lake."""

from __future__ import annotations

import collections

import numpy as np
import pandas as pd
import pyarrow as pa
import pyarrow.dataset as pads
import pyarrow.parquet as pq
import pytest
import redis

from candidate_gen.block import CandidateBlock
from candidate_gen.config import IntegrityConfig, IntegrityRules
from candidate_gen.fanout import FanoutWorker
from candidate_gen.filters import default_chain
from candidate_gen.integrity import Labels, build_labels, label, labels_from_lake, read_labels, write_labels
from candidate_gen.stream_fanout import FanoutStreamConsumer
from data import columns as c
from data import lake
from data.contracts import ENGAGEMENTS
from data.days import DAY_MS, day_end_ms
from data.redis_server import EmbeddedRedis
from data.stream.entries import Event
from data.stream.valkey_stream import ValkeyStream
from data.typed_config import ConfigError
from tests.candidates.helpers import T0, fresh_config
from tests.candidates.test_fatigue import engagement

RULES = IntegrityRules()


def negatives(rows: list[tuple[int, int, int, str]]) -> pd.DataFrame:
    return pd.DataFrame(rows, columns=[c.VIEWER_ID, c.POST_ID, c.AUTHOR_ID, c.TYPE])


def posts(rows: list[tuple[int, int, int, list[str] | None]]) -> pd.DataFrame:
    return pd.DataFrame(rows, columns=[c.POST_ID, c.AUTHOR_ID, "created_ms", c.HASHTAGS])


def test_distinct_reporters_make_a_post_borderline_and_one_reporter_twice_does_not():
    events = negatives([(1, 10, 5, "report"), (2, 10, 5, "report"),  # two viewers: borderline
                        (3, 11, 5, "report"), (3, 11, 5, "report"),  # one viewer, twice: not
                        (4, 12, 5, "hide")])
    got = label(events, None, posts([]), None, T0, RULES)
    assert got.posts == {10: {"borderline"}}
    assert "borderline_negative_rate" not in got.rules_run  # no impressions log: the rate rule cannot run


def test_the_negative_rate_needs_enough_impressions():
    events = negatives([(v, 20, 6, "hide") for v in range(1, 5)] + [(v, 21, 6, "hide") for v in range(1, 5)])
    impressions = pd.Series({20: 30, 21: 29})  # 4/30 >= 0.1 over 30; 21: too few impressions to judge
    got = label(events, impressions, posts([]), None, T0, RULES)
    assert got.posts == {20: {"borderline"}} and "borderline_negative_rate" in got.rules_run


def test_sensitive_hashtags_label_posts_whatever_their_case_or_hash():
    rules = RULES.changed(sensitive_hashtags=["#Gore"])
    got = label(negatives([]), None, posts([(30, 7, T0, ["gore", "x"]), (31, 7, T0, ["GORE"]), (32, 7, T0, None),
                                            (33, 7, T0, ["#gore"]), (34, 7, T0, ["core"])]), None, T0, rules)
    assert got.posts == {30: {"sensitive"}, 31: {"sensitive"}, 33: {"sensitive"}}


def test_an_account_is_spam_for_its_borderline_posts_or_for_posting_fast_while_new():
    reported = [(v, p, 8, "report") for p in (40, 41, 42) for v in (1, 2)]
    young = [(50 + k, 9, T0 - DAY_MS, None) for k in range(40)]  # 40 posts in its first 2 days: 20 a day
    old = [(100 + k, 11, T0 - DAY_MS, None) for k in range(40)]  # as many, from an old account
    slow = [(200 + k, 12, T0 - DAY_MS, None) for k in range(10)]
    joined = pd.Series({9: T0 - 2 * DAY_MS, 11: T0 - 30 * DAY_MS, 12: T0 - DAY_MS})
    got = label(negatives(reported), None, posts(young + old + slow), joined, T0, RULES)
    assert got.accounts == {8: {"spam"}, 9: {"spam"}}
    assert "spam_new_account" in got.rules_run
    no_users = label(negatives(reported), None, posts(young), None, T0, RULES)
    assert no_users.accounts == {8: {"spam"}} and "spam_new_account" not in no_users.rules_run


def land_post_labels(lake_dir, day: str, rows: list[tuple[int, str, float | None, int]]) -> None:
    """(post_id, label, score | None, ts_ms) rows as the day's written post_labels partition."""
    table = pa.table({c.POST_ID: pa.array([r[0] for r in rows], pa.int64()),
                      c.LABEL: pa.array([r[1] for r in rows], pa.string()),
                      c.SCORE: pa.array([r[2] for r in rows], pa.float64()),
                      c.TS: pa.array([r[3] * 1000 for r in rows], pa.timestamp("us", tz="UTC"))})
    folder = lake.partition_dir(lake_dir, "post_labels", day)
    folder.mkdir(parents=True)
    pq.write_table(table, folder / "part-0.parquet")
    (folder / "_SUCCESS").touch()


def test_post_labels_at_the_threshold_or_from_a_human_are_taken_and_an_absent_log_is_skipped(tmp_path):
    day = "2026-11-02"
    end = day_end_ms(day)
    land_post_labels(tmp_path, day, [(1, "borderline", 0.9, end - 1_000),  # the classifier, confident
                                     (2, "borderline", 0.3, end - 1_000),  # below min_label_score: left
                                     (3, "sensitive", None, end - 1_000),  # a human reviewer's: taken
                                     (4, "spam", 0.5, end - 1_000),  # exactly the threshold: taken
                                     (5, "borderline", 0.99, end + 1)])  # after the day: not yet
    got, negatives = labels_from_lake(tmp_path, day, RULES)
    assert got.posts == {1: {"borderline"}, 3: {"sensitive"}, 4: {"spam"}} and negatives == 0
    assert "post_labels" in got.rules_run
    strict, _ = labels_from_lake(tmp_path, day, RULES.changed(min_label_score=0.95))
    assert strict.posts == {3: {"sensitive"}}
    bare, _ = labels_from_lake(tmp_path / "no_such_export", day, RULES)  # no post_labels log at all
    assert bare.posts == {} and "post_labels" not in bare.rules_run


def test_outcomes_are_typed_and_never_laxer_out_of_network():
    assert IntegrityConfig().outcomes["spam"] == ("downrank", "drop")
    with pytest.raises((ConfigError, ValueError), match="stricter"):
        IntegrityConfig.parse({"outcomes": {"spam": ["drop", "allow"]}}, "integrity")
    with pytest.raises((ConfigError, ValueError), match="unknown label"):
        IntegrityConfig.parse({"outcomes": {"nsfw": ["allow", "drop"]}}, "integrity")
    with pytest.raises((ConfigError, ValueError), match="unknown outcome"):
        IntegrityConfig.parse({"outcomes": {"spam": ["allow", "hide"]}}, "integrity")


def test_labels_are_replaced_whole_and_read_on_the_chains_round_trip(redis_server):
    client = redis.Redis.from_url(redis_server.url)
    cfg = fresh_config()
    write_labels(client, cfg.keys, Labels({1: {"borderline"}, 2: {"sensitive"}}, {7: {"spam"}}))
    write_labels(client, cfg.keys, Labels({2: {"sensitive", "borderline"}}, {7: {"spam"}}))
    assert read_labels(client, cfg.keys) == Labels({2: {"borderline", "sensitive"}}, {7: {"spam"}})

    block = CandidateBlock.build([1, 2, 3, 4], [5, 6, 7, 5], T0, "trending", 1.0)
    result = default_chain(client, cfg, seen=False).run(99, block, T0)
    assert len(result.kept) == 4  # the labels' reader removes nothing: the service's stage decides
    assert result.states["integrity"] == {2: {"borderline", "sensitive"}, 3: {"spam"}}  # 3: its author's

    write_labels(client, cfg.keys, Labels())
    assert not client.exists(cfg.keys.integrity_posts, cfg.keys.integrity_accounts)
    assert default_chain(client, cfg, seen=False).run(99, block, T0).states["integrity"] == {}
    off = cfg.model_copy(update={"integrity": cfg.integrity.changed(enabled=False)})
    assert "integrity" not in default_chain(client, off, seen=False).run(99, block, T0).states


def test_the_daily_build_labels_what_an_independent_count_of_the_lake_says(tiny_lake, redis_server):
    settings, summary, _ = tiny_lake
    day = summary.days[-1]
    client = redis.Redis.from_url(redis_server.url)
    cfg = fresh_config()
    rules = RULES.changed(borderline_reporters=1)  # the tiny world reports little: one reporter is enough here
    meta = build_labels(settings.lake_dir, day, client, IntegrityConfig(rules=rules), cfg.keys)
    assert set(meta["rules_run"]) == {"borderline_reporters", "borderline_negative_rate", "spam_borderline_posts",
                                      "spam_new_account", "post_labels"}

    # reporters per post counted straight from the lake's files, apart from the rules' pandas
    end, start = day_end_ms(day), day_end_ms(day) - rules.window_ms
    table = pads.dataset(str(lake.table_dir(settings.lake_dir, "engagements")), format="parquet",
                         partitioning="hive").to_table(columns=[c.POST_ID, c.TS], filter=pads.field(c.TYPE) == "report")
    ts = table.column(c.TS).cast("int64").to_numpy() // 1000
    reported = {p for p, t in zip(table.column(c.POST_ID).to_pylist(), ts, strict=True) if start <= t <= end}
    stored = read_labels(client, cfg.keys)
    assert reported and reported <= {p for p, labels in stored.posts.items() if "borderline" in labels}
    assert meta["posts_labelled"] == len(stored.posts) and meta["accounts_labelled"] == len(stored.accounts)
    spam_by_posts = collections.Counter()
    authors = dict(zip(*(pads.dataset(str(lake.table_dir(settings.lake_dir, "posts")), format="parquet",
                                      partitioning="hive").to_table(columns=[c.POST_ID, c.AUTHOR_ID])
                         .column(k).to_pylist() for k in (c.POST_ID, c.AUTHOR_ID)), strict=True))
    engaged = pads.dataset(str(lake.table_dir(settings.lake_dir, "engagements")), format="parquet",
                           partitioning="hive").to_table(columns=[c.POST_ID, c.AUTHOR_ID])
    authors.update(zip(engaged.column(c.POST_ID).to_pylist(), engaged.column(c.AUTHOR_ID).to_pylist(), strict=True))
    for p, labels in stored.posts.items():
        if "borderline" in labels:
            spam_by_posts[authors[p]] += 1
    expected = {a for a, n in spam_by_posts.items() if n >= rules.spam_borderline_posts}
    assert expected <= set(stored.accounts)
    client.delete(cfg.keys.integrity_posts, cfg.keys.integrity_accounts)
    assert np.isfinite(meta["negatives"])


def test_a_posts_second_reporter_on_the_stream_labels_it_within_a_poll(redis_server, tmp_path):
    """Reports through the stream: the fan-out consumer keeps each post's reporters; the second
    distinct one labels the post borderline, its other labels kept; a repeat changes nothing."""
    client = redis.Redis.from_url(redis_server.url)
    cfg = fresh_config()
    keys = cfg.keys
    write_labels(client, keys, Labels({50: {"sensitive"}}, {}))
    with EmbeddedRedis(data_dir=tmp_path / "stream", durable=True) as server:
        stream = ValkeyStream.connect(server.url, 2)
        consumer = FanoutStreamConsumer(stream, FanoutWorker(client, cfg))
        first = [Event(ENGAGEMENTS.name, engagement(1, 50, 9, "report", T0), "1-50"),
                 Event(ENGAGEMENTS.name, engagement(1, 51, 9, "report", T0), "1-51"),
                 Event(ENGAGEMENTS.name, engagement(1, 51, 9, "report", T0 + 1), "1-51b")]  # the same viewer again
        stream.append(first, at_ms=T0)
        assert consumer.poll().push_aways == 3
        assert read_labels(client, keys).posts == {50: {"sensitive"}}  # one reporter each: not yet
        stream.append([Event(ENGAGEMENTS.name, engagement(2, 50, 9, "report", T0 + 2), "2-50"),
                       Event(ENGAGEMENTS.name, engagement(2, 52, 9, "hide", T0 + 2), "2-52")], at_ms=T0)
        consumer.poll()
        assert read_labels(client, keys).posts == {50: {"sensitive", "borderline"}}
        consumer.close()
    assert client.ttl(keys.integrity_reporters(50)) > 0
