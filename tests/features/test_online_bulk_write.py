"""`write_window` writes what Feast's materialize + the packer's read-back write, byte for byte.

Two copies of the same real Feast repo (Parquet sources, file registry, Redis online store on an
embedded Valkey), one per database: one refreshed by `materialize_packed` (Feast's own materialize,
then the read-back), the other by `write_window`. Every key, its type, its value and whether it
expires must be the same, through a first window, newer rows, an older window re-run (Feast's
staleness rule keeps the stored rows) and with Feast's key TTL. The sample repo holds every
packable dtype, nulls, a String feature, a composite key and several rows per entity.
"""

from __future__ import annotations

import struct
from datetime import timedelta
from pathlib import Path

import numpy as np
import pandas as pd
import pyarrow as pa
import pytest
import redis
from feast.infra.key_encoding_utils import serialize_entity_key
from feast.protos.feast.types.EntityKey_pb2 import EntityKey as EntityKeyProto
from feast.protos.feast.types.Value_pb2 import Value as ValueProto
from hypothesis import given, settings
from hypothesis import strategies as st

from data.columns import POST_ID
from features.online import materialize_packed
from features.online.bulk_write import write_window
from features.online.encode import int_entity_keys
from features.online.sample_repo import (
    ANCHOR,
    EVENT_TS,
    POST_FEATURES,
    SampleRepo,
    SampleSizes,
    build_sample_repo,
    sample_rows,
)

FULL_WINDOW = (ANCHOR - timedelta(days=40), ANCHOR)
FEAST_DB, BULK_DB = 12, 13
SIZES = SampleSizes(posts=120, authors=30, viewers=12, pairs=300, null_fraction=0.15)


def _client(redis_url: str, db: int) -> redis.Redis:
    return redis.Redis.from_url(f"{redis_url.rsplit('/', 1)[0]}/{db}")  # the URL's own /db wins over db=


def _twin_repos(root: Path, redis_url: str, **kw) -> tuple[SampleRepo, SampleRepo]:
    """The same repo (same seed, same project) twice: Feast's path's database and ours."""
    repos = []
    for db in (FEAST_DB, BULK_DB):
        _client(redis_url, db).flushdb()
        repos.append(build_sample_repo(root / f"db{db}", redis_url, db=db, project="bulk_probe", **kw))
    return repos[0], repos[1]


def _contents(redis_url: str, db: int) -> dict[bytes, tuple]:
    client = _client(redis_url, db)
    out = {}
    for key in client.scan_iter(count=1_000):
        kind = client.type(key)
        value = client.hgetall(key) if kind == b"hash" else client.get(key)
        out[key] = (kind, value, client.pttl(key) > 0)
    return out


def assert_same_redis(redis_url: str, marker: bytes | None = None) -> int:
    """Same keys and values in both databases; `marker`: keys ending so exist only in ours."""
    feast, bulk = _contents(redis_url, FEAST_DB), _contents(redis_url, BULK_DB)
    if marker:
        assert {k for k in bulk if k.endswith(marker)}
        bulk = {k: v for k, v in bulk.items() if not k.endswith(marker)}
    assert feast.keys() == bulk.keys()
    different = [k for k in feast if feast[k] != bulk[k]]
    assert not different, f"{len(different)} keys differ, e.g. {different[:3]}"
    return len(feast)


def _add_rows(repo: SampleRepo, at, posts: list[int]) -> None:
    """New rows of post_stats at `at` for `posts` (some values null, post 5 new)."""
    rng = np.random.default_rng(99)
    update = sample_rows(rng, {POST_ID: np.array(posts)}, POST_FEATURES, 1, 0.3, end=ANCHOR + timedelta(hours=2))
    update[EVENT_TS] = pd.Timestamp(at)
    update["created"] = update[EVENT_TS]
    repo.write_frame("post_stats", pd.concat([repo.frames["post_stats"], update], ignore_index=True))


@pytest.mark.parametrize("key_ttl_seconds", [None, 3_600], ids=["no_key_ttl", "key_ttl"])
def test_bulk_write_equals_feast_materialize_and_pack(redis_server, tmp_path, key_ttl_seconds):
    by_feast, by_bulk = _twin_repos(tmp_path, redis_server.url, sizes=SIZES, key_ttl_seconds=key_ttl_seconds)

    materialize_packed(by_feast.store, *FULL_WINDOW)
    stats = write_window(by_bulk.store, *FULL_WINDOW)
    assert assert_same_redis(redis_server.url) > 2 * SIZES.posts
    assert {s.written for s in stats.values()} and all(s.written == s.entities_read for s in stats.values())
    for name in by_bulk.views:  # the registry records the window, as materialize does
        intervals = by_bulk.store.get_feature_view(name).materialization_intervals
        assert (FULL_WINDOW[0], FULL_WINDOW[1]) in [(a, b) for a, b in intervals], name

    # newer rows: 10 posts change (some values now null), post 5 appears
    posts = sorted(int(p) for p in by_feast.frames["post_stats"][POST_ID].unique())[:10] + [5]
    newer = (ANCHOR + timedelta(minutes=1), ANCHOR + timedelta(days=1))
    for repo in (by_feast, by_bulk):
        _add_rows(repo, ANCHOR + timedelta(hours=1), posts)
    materialize_packed(by_feast.store, *newer, ["post_stats"])
    assert write_window(by_bulk.store, *newer, ["post_stats"])["post_stats"].written == len(posts)
    assert_same_redis(redis_server.url)

    # the whole history again: every stored row is as new or newer, Feast keeps them all
    materialize_packed(by_feast.store, *FULL_WINDOW)
    write_window(by_bulk.store, *FULL_WINDOW)
    assert_same_redis(redis_server.url)


def test_a_lost_packed_record_is_rewritten_from_feasts_hash(redis_server, tmp_path):
    """A packed key lost after Feast's hash was written (a crash between the two): re-running the
    window cannot write the hash (not newer) but repacks the entity from what Feast holds."""
    by_feast, by_bulk = _twin_repos(tmp_path, redis_server.url, sizes=SampleSizes(posts=30, authors=6,
                                                                                   viewers=4, pairs=20))
    materialize_packed(by_feast.store, *FULL_WINDOW)
    write_window(by_bulk.store, *FULL_WINDOW)
    client = _client(redis_server.url, BULK_DB)
    lost = [k for k in client.scan_iter(match=b"loupe:pv:bulk_probe:post_stats:*", count=1_000)
            if not k.endswith(b"_meta")][:5]
    assert len(lost) == 5
    client.delete(*lost)
    stats = write_window(by_bulk.store, *FULL_WINDOW, ["post_stats"])
    assert stats["post_stats"].written == stats["post_stats"].entities_read
    assert assert_same_redis(redis_server.url)


@settings(max_examples=200, deadline=None)
@given(st.lists(st.tuples(st.integers(-2**63, 2**63 - 1), st.integers(-2**31, 2**31 - 1)), min_size=1,
                max_size=20),
       st.sampled_from(["loupe", "p", "ünïcode"]))
def test_integer_entity_keys_are_feasts_encoding(rows, project):
    """Composite (Int64, Int32) keys and a single Int64 key, against serialize_entity_key(v3)."""
    big = np.array([r[0] for r in rows], dtype=np.int64)
    small = np.array([r[1] for r in rows], dtype=np.int32)
    batch = pa.record_batch({"zeta_id": pa.array(big), "alpha_id": pa.array(small)})
    both = int_entity_keys(batch, {"zeta_id": "Int64", "alpha_id": "Int32"}, project.encode())
    one = int_entity_keys(batch, {"zeta_id": "Int64"}, project.encode())
    for i, (b, s) in enumerate(rows):
        composite = EntityKeyProto(join_keys=["zeta_id", "alpha_id"],
                                   entity_values=[ValueProto(int64_val=b), ValueProto(int32_val=s)])
        single = EntityKeyProto(join_keys=["zeta_id"], entity_values=[ValueProto(int64_val=b)])
        assert both[i] == serialize_entity_key(composite, 3) + project.encode()
        assert one[i] == serialize_entity_key(single, 3) + project.encode()
    assert struct.unpack_from("<I", both[0])[0] == 2



@settings(max_examples=200, deadline=None)
@given(st.lists(st.lists(st.integers(-2**63, 2**63 - 1), max_size=6), min_size=1, max_size=8),
       st.lists(st.lists(st.text(max_size=4), max_size=4), min_size=1, max_size=8))
def test_list_values_are_feasts_protos(ints, texts):
    """The list fast path against Feast's own converter, byte for byte (empty lists included); a
    column it does not cover (a null list) is left to the converter."""
    from feast.types import Array, Int64, String
    from feast.utils import _columns_to_proto_values

    from features.online.encode import list_values

    for values, dtype, arrow in [(ints, Array(Int64), pa.int64()), (texts, Array(String), pa.string())]:
        batch = pa.record_batch({"f": pa.array(values, pa.list_(arrow))})
        feast = _columns_to_proto_values(batch, [("f", dtype.to_value_type())], allow_missing=False)["f"]
        assert list_values(batch.column("f"), str(dtype)) == [p.SerializeToString() for p in feast]
    assert list_values(pa.array([[1], None], pa.list_(pa.int64())), str(Array(Int64))) is None
    assert list_values(pa.array([1.0], pa.float32()), "Float32") is None
