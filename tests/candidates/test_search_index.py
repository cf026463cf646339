"""The post search index (candidate_gen/search/): built from lake partitions idempotently (a day
applied once, applied again when its files change, deletions taken out and never put back), kept up
to date from the event stream by its own consumer group, and queried with no FTS5 syntax of the
user's getting through (quotes, `*`, NEAR, column filters, parentheses are plain separators)."""

from __future__ import annotations

import json
import sqlite3

import pandas as pd
import pyarrow as pa
import pyarrow.parquet as pq
import pytest

from candidate_gen.search.lake_refresh import refresh_from_lake
from candidate_gen.search.post_text_index import (
    IndexMissing,
    PostText,
    PostTextIndex,
    SearchIndexReader,
)
from candidate_gen.search.search_stream_consumer import GROUP, SearchIndexStreamConsumer
from candidate_gen.search.search_terms import EmptyQuery, SearchTerms
from data import lake
from data.days import day_of_ms, iso_ms
from data.redis_server import EmbeddedRedis
from data.stream.entries import Event
from data.stream.valkey_stream import ValkeyStream
from tests.candidates.helpers import HOUR, T0

LAKE_SCHEMA = pa.schema([
    ("post_id", pa.int64()), ("author_id", pa.int64()), ("created_at", pa.timestamp("us", "UTC")),
    ("media_type", pa.string()), ("hashtags", pa.list_(pa.string())), ("caption", pa.string()),
    ("deleted_at", pa.timestamp("us", "UTC")),
])


def lake_rows(rows: list[tuple]) -> pa.Table:
    """(post_id, author_id, created_ms, hashtags, caption, deleted_ms | None) as the lake holds them."""
    def ts(ms):
        return None if ms is None else pd.Timestamp(ms, unit="ms", tz="UTC")
    return pa.Table.from_pylist([
        {"post_id": p, "author_id": a, "created_at": ts(t), "media_type": "photo", "hashtags": h, "caption": cap,
         "deleted_at": ts(d)} for p, a, t, h, cap, d in rows], schema=LAKE_SCHEMA)


def write_day(lake_dir, day: str, rows: list[tuple], name: str = "part-0.parquet") -> None:
    folder = lake.partition_dir(lake_dir, "posts", day)
    folder.mkdir(parents=True, exist_ok=True)
    pq.write_table(lake_rows(rows), folder / name)
    (folder / "_SUCCESS").touch()


def found(path, query: str, limit: int = 50, prefix: bool = False) -> list[int]:
    reader = SearchIndexReader(path)
    try:
        return sorted(reader.match(SearchTerms.parse(query), limit, prefix).post.tolist())
    finally:
        reader.close()


DAY1, DAY2 = day_of_ms(T0), day_of_ms(T0 + 24 * HOUR)


def test_a_build_from_the_lake_indexes_hashtags_and_captions_and_is_idempotent(tmp_path):
    lake_dir, path = tmp_path / "lake", tmp_path / "search" / "posts.sqlite"
    write_day(lake_dir, DAY1, [
        (1, 10, T0, ["foodlover", "#travel"], "new dinner at the café", None),
        (2, 11, T0 + 1, ["sunset"], None, None),
        (3, 12, T0 + 2, None, "Weekend trip", None),
    ])
    with PostTextIndex(path) as index:
        first = refresh_from_lake(index, lake_dir)
        assert (first.days_applied, first.upserted, first.indexed) == ([DAY1], 3, 3)
        again = refresh_from_lake(index, lake_dir)
        assert (again.days_applied, again.days_unchanged, again.upserted, again.indexed) == ([], 1, 0, 3)
    assert found(path, "food", prefix=True) == [1] and found(path, "food") == []  # a prefix of foodlover
    assert found(path, "#travel") == found(path, "travel") == [1]  # `#tag` and `tag` alike
    assert found(path, "cafe") == [1]  # diacritics removed
    assert found(path, "DINNER New") == [1]  # case folded, every word required, any order
    assert found(path, "trip") == [3] and found(path, "sunset") == [2]
    assert found(path, "dinner sunset") == []


def test_a_deletion_in_a_later_day_removes_the_post_for_good(tmp_path):
    lake_dir, path = tmp_path / "lake", tmp_path / "posts.sqlite"
    write_day(lake_dir, DAY1, [(1, 10, T0, ["pets"], "my pup", None), (2, 11, T0, ["pets"], None, None)])
    with PostTextIndex(path) as index:
        refresh_from_lake(index, lake_dir)
        assert found(path, "pets") == [1, 2]
        write_day(lake_dir, DAY2, [(1, 10, T0, ["pets"], "my pup", T0 + 30 * HOUR)])
        stats = refresh_from_lake(index, lake_dir)
        assert (stats.days_applied, stats.deleted, stats.indexed) == ([DAY2], 1, 1)
        assert found(path, "pets") == [2]
        # the creation's day ingested again (more files landed): applied again, the post stays deleted
        write_day(lake_dir, DAY1, [(4, 12, T0, ["pets"], None, None)], name="part-1.parquet")
        stats = refresh_from_lake(index, lake_dir)
        assert stats.days_applied == [DAY1]
        assert found(path, "pets") == [2, 4]
        # a fresh build from the same lake gives the same index
    with PostTextIndex(tmp_path / "fresh.sqlite") as fresh:
        refresh_from_lake(fresh, lake_dir)
    assert found(tmp_path / "fresh.sqlite", "pets") == [2, 4]


def test_an_upsert_rewrites_only_what_changed(tmp_path):
    with PostTextIndex(tmp_path / "posts.sqlite") as index:
        post = PostText(1, 10, T0, ["art"], "a sketch")
        assert index.upsert([post]) == 1
        assert index.upsert([post]) == 0
        assert index.upsert([PostText(1, 10, T0, ["art", "artlover"], "a sketch")]) == 1
        assert index.count() == 1
        assert index.delete([(1, T0 + HOUR), (99, T0 + HOUR)]) == 1
        assert index.upsert([post]) == 0 and index.count() == 0  # deleted before: never indexed again
        # the newest indexed first (post ids need not follow time): a window of one is the last indexed
        index.upsert([PostText(9, 10, T0, ["art"], None), PostText(5, 10, T0 + 1, ["art"], None)])
    assert found(tmp_path / "posts.sqlite", "art", limit=1) == [5]


def test_the_reader_gives_posts_hashtags_as_lower_cased_words(tmp_path):
    with PostTextIndex(tmp_path / "posts.sqlite") as index:
        index.upsert([PostText(1, 10, T0, ["#Food", "street food"], None), PostText(2, 10, T0, [], "no tags"),
                      PostText(3, 11, T0, ["art"], None)])
        index.delete([(3, T0 + HOUR)])
    reader = SearchIndexReader(tmp_path / "posts.sqlite")
    try:  # a post without hashtags, deleted, or never indexed is absent
        assert reader.hashtags([1, 2, 3, 4]) == {1: ["food", "street", "food"]}
        assert reader.hashtags([]) == {}
    finally:
        reader.close()
    with pytest.raises(IndexMissing):
        SearchIndexReader(tmp_path / "absent.sqlite").hashtags([1])


@pytest.mark.parametrize("query", [
    '"', '""', '"food', 'food"', '*', 'food*', '* food', 'NEAR(food dinner)', 'food NEAR dinner', 'NEAR',
    'hashtags:food', 'caption : dinner', '^food', 'food AND', 'OR food', 'NOT', '(food', 'food)', "food' --",
    '"food" OR "x"', 'food + dinner', '-food', '{hashtags caption}: food', 'food\x00', '食べ物', 'ÉTÉ',
])
def test_no_query_reaches_fts5_as_syntax(tmp_path, query):
    path = tmp_path / "posts.sqlite"
    with PostTextIndex(path) as index:
        index.upsert([PostText(1, 10, T0, ["food", "near"], "dinner or not", ), PostText(2, 11, T0, ["été"], None)])
    try:
        terms = SearchTerms.parse(query)
    except EmptyQuery:
        assert not any(ch.isalnum() for ch in query)
        return
    assert all(w.isalnum() for w in terms.words)
    got = found(path, query)  # never an FTS5 syntax error
    assert set(got) <= {1, 2} and set(found(path, query, prefix=True)) <= {1, 2}


def test_a_query_with_no_word_is_refused():
    for query in ("", "   ", "#", '"*"', "---", "()"):
        with pytest.raises(EmptyQuery):
            SearchTerms.parse(query)
    assert SearchTerms.parse("a b c d e f g h i j", max_words=3).words == ("a", "b", "c")
    assert SearchTerms.parse('NEAR "x" near').expression() == '"near" "x"'
    assert SearchTerms.parse('NEAR "x" near').expression(prefix=True) == '"near"* "x"*'


def test_a_missing_or_foreign_file_is_index_missing(tmp_path):
    with pytest.raises(IndexMissing):
        SearchIndexReader(tmp_path / "absent.sqlite").match(SearchTerms.parse("x"), 5)
    other = tmp_path / "other.sqlite"
    sqlite3.connect(other).execute("CREATE TABLE t (x)").connection.commit()
    with pytest.raises(IndexMissing):
        SearchIndexReader(other).match(SearchTerms.parse("x"), 5)


def post_line(post_id: int, author_id: int, created_ms: int, hashtags, caption, deleted_ms=None) -> Event:
    line = {"post_id": post_id, "author_id": author_id, "created_at": iso_ms(created_ms), "media_type": "photo",
            "hashtags": hashtags, "caption": caption,
            "deleted_at": None if deleted_ms is None else iso_ms(deleted_ms)}
    return Event("posts", json.dumps(line), str(post_id))


@pytest.fixture
def stream(tmp_path):
    with EmbeddedRedis(data_dir=tmp_path / "stream", durable=True) as server:
        yield ValkeyStream.connect(server.url, partitions=2)


def test_the_stream_consumer_adds_new_posts_and_removes_deleted_ones(tmp_path, stream):
    path = tmp_path / "posts.sqlite"
    with PostTextIndex(path) as index:
        index.upsert([PostText(1, 10, T0 - HOUR, ["music"], "a song")])  # what the daily build left
        consumer = SearchIndexStreamConsumer(stream, index)
        try:
            stream.append([post_line(2, 11, T0, ["musiclover"], "new song"),
                           post_line(3, 12, T0 + 1, ["gaming"], None),
                           Event("follows", json.dumps({"follower_id": 1, "followee_id": 2, "action": "follow",
                                                        "ts": iso_ms(T0)}), "1:2"),
                           Event("posts", '{"post_id": 4, "author_id": "x"}', "4")], at_ms=T0 + 2)
            assert found(path, "song") == [1]  # not before the poll
            stats = consumer.poll()
            assert (stats.posts, stats.deletes, stats.ignored, sum(stats.unreadable.values())) == (2, 0, 1, 1)
            assert stats.reconciles
            assert found(path, "song") == [1, 2] and found(path, "gaming") == [3]
            stream.append([post_line(1, 10, T0 - HOUR, ["music"], "a song", deleted_ms=T0 + 3),
                           post_line(3, 12, T0 + 1, ["gaming"], None, deleted_ms=T0 + 4)], at_ms=T0 + 5)
            assert consumer.poll().deletes == 2
            assert found(path, "song") == [2] and found(path, "gaming") == []
            # an entry delivered again (a consumer that died before its ack) changes nothing
            stream.append([post_line(3, 12, T0 + 1, ["gaming"], None)], at_ms=T0 + 6)
            consumer.poll()
            assert found(path, "gaming") == [] and index.count() == 1
            assert stream.lag(GROUP).pending == 0
        finally:
            consumer.close()


@pytest.mark.integration  # a Dagster run
def test_the_daily_asset_refreshes_the_index_up_to_its_day(tmp_path):
    import dagster as dg

    from pipelines.defs.candidates.assets import candidates_search_index
    from pipelines.defs.candidates.resources import SearchIndexResource
    from pipelines.partitions import materialize_day
    from pipelines.resources import WorkspaceResource

    lake_dir, path = tmp_path / "lake", tmp_path / "search" / "posts.sqlite"
    write_day(lake_dir, DAY1, [(1, 10, T0, ["books"], "a read", None)])
    write_day(lake_dir, DAY2, [(2, 11, T0 + 24 * HOUR, ["books"], None, None),
                               (1, 10, T0, ["books"], None, T0 + 25 * HOUR)])
    resources = {"workspace": WorkspaceResource(landing_dir=str(tmp_path / "landing"), lake_dir=str(lake_dir)),
                 "search_index": SearchIndexResource(path=str(path))}
    with dg.DagsterInstance.ephemeral() as instance:
        first = materialize_day([candidates_search_index], partition_key=DAY1, instance=instance, resources=resources)
        assert first.success and found(path, "books") == [1]
        second = materialize_day([candidates_search_index], partition_key=DAY2, instance=instance, resources=resources)
        assert second.success and found(path, "books") == [2]
        meta = second.asset_materializations_for_node("candidates__search_index")[0].metadata
        assert (meta["days_applied"].value, meta["deleted"].value, meta["indexed"].value) == (1, 1, 1)
