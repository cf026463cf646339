"""bench-features, on the medium world:

1. the daily feature pipeline for the newest day: the Spark snapshots, `feast apply`, then the
   online store (Feast's hash + the packed view, from Spark: features/online/spark_write.py) for the
   day before (a full refresh of an empty store) and for the day (the daily, incremental refresh);
   seconds per asset, entities written, the changed fraction of entities and, of theirs, of feature
   values (only the changed ones go to Feast's hash);
2. the ceiling of the online refresh, same server, same run: the rows the incremental refresh
   sends, encoded ahead as it encodes them, sent as raw pipelined writes (entities per second per
   view, weighted by what the day wrote);
3. hydrating 1,000 ranking candidates with feed_ranker_v1: Feast's get_online_features vs the
   packed reader, same Redis, same requests, interleaved in one run, parity checked first.

A request is one viewer and 1,000 candidates: the recent posts of the authors the viewer follows
(about half when there are enough), the rest recent posts of anyone.
"""

from __future__ import annotations

import json
import sys
import tempfile
import time
from pathlib import Path

import dagster as dg
import numpy as np
import pyarrow as pa
import pyarrow.compute as pc
import pyarrow.dataset as pads
import redis as redis_py

from benchmarks.common import PeakRss, interleaved, ms_percentile, write_result
from benchmarks.workspace import WORLD, bench_settings, ensure_feature_snapshots, ensure_lake
from data import columns as c
from data.days import day_end
from data.redis_server import EmbeddedRedis
from features.feature_repo.definitions import REQUEST_TS, SERVICE_NAME
from features.online.encode import ViewEncoder, epoch_us
from features.online.packer import PackedViewWriter
from features.online.parity import reader_vs_feast
from features.online.ranking import RankingFeatureReader
from features.online.transport import send_pipelined
from features.storage import feature_partition_dir
from features.tables import EVENT_TIMESTAMP, POST, RELATIONSHIP, TABLES
from pipelines.defs.features.assets import feast_online, feast_registry, feature_assets
from pipelines.partitions import materialize_day
from pipelines.resources import build_resources

CANDIDATES = 1_000
CEILING_SAMPLE = 200_000  # rows per view the ceiling sends
BATCH = 20_000  # rows per pipelined send, as the writers'
PREV = "__prev_"
REQUESTS = 40


def run_daily_pipeline(settings, previous: str, day: str, redis_url: str) -> tuple[dict[str, float], dict[str, dict]]:
    """Seconds per asset, and the online refresh's metadata per refreshed day (`previous`, then `day`)."""
    resources = build_resources(settings, redis_url)
    seconds: dict[str, float] = {}
    online: dict[str, dict] = {}
    ensure_feature_snapshots(settings, [previous])
    with dg.DagsterInstance.ephemeral() as instance:
        result = materialize_day(feature_assets, partition_key=day, instance=instance, resources=resources)
        for step in result.get_step_success_events():
            seconds[step.step_key.replace("__", "/")] = step.event_specific_data.duration_ms / 1000
        for assets, partition in (([feast_registry], None), ([feast_online], previous), ([feast_online], day)):
            start = time.perf_counter()
            result = materialize_day(assets, partition_key=partition, instance=instance, resources=resources)
            assert all(check.passed for check in result.get_asset_check_evaluations())
            name = assets[0].key.to_user_string() + (f"/{partition}" if partition else "")
            seconds[name] = time.perf_counter() - start
            if partition:
                [event] = result.get_asset_materialization_events()
                online[partition] = {k: v.value for k, v in event.materialization.metadata.items()}
    return {k: round(v, 2) for k, v in seconds.items()}, online


def ceiling(store, client, day: str, previous: str, lake_dir, written: dict[str, int],
            sample: int = CEILING_SAMPLE) -> dict:
    """Raw pipelined writes of the refresh's own bytes into a scratch database of the same server:
    of `sample` rows per view of the day's snapshot, those the incremental refresh sends (values
    differing from the day before's, or new), each with only its changed features in Feast's hash
    and its whole packed record, encoded ahead. Entities per second per view, and for the day's mix
    (`written` per view)."""
    writer = PackedViewWriter(store, client)
    scratch = redis_py.Redis(connection_pool=redis_py.ConnectionPool(
        **{**client.connection_pool.connection_kwargs, "db": 1}))
    per_view = {}
    for name in written:
        encoder = ViewEncoder.of(writer, store.get_feature_view(name))
        table, changed = _changed_rows(encoder, lake_dir, day, previous, sample)
        batches = [(table.slice(i, BATCH), changed[i:i + BATCH]) for i in range(0, table.num_rows, BATCH)]
        commands = [encoder.write_commands(b, epoch_us(b.column(EVENT_TIMESTAMP)), changed=m)[1] for b, m in batches]
        scratch.flushdb()
        start = time.perf_counter()
        for chunk in commands:  # as the writers send them: one sendall a batch
            send_pipelined(scratch, [b"".join(chunk)], len(chunk))
        per_view[name] = table.num_rows / (time.perf_counter() - start)
    scratch.flushdb()
    seconds = sum(n / per_view[name] for name, n in written.items())
    return {"entities_per_s_by_view": {k: round(v) for k, v in per_view.items()},
            "entities_per_s": round(sum(written.values()) / seconds) if seconds else None}


def _changed_rows(encoder: ViewEncoder, lake_dir, day: str, previous: str, sample: int) -> tuple[pa.Table, np.ndarray]:
    """Of the day's first `sample` rows, those differing from the day before's row of their entity
    (or without one), and which features differ (rows x features), as spark_write's diff finds them."""
    keys, features = list(encoder.key_types), [f.name for f in encoder.fv.features]
    table = TABLES[encoder.fv.name]
    today = pads.dataset(str(feature_partition_dir(lake_dir, table, day))).head(sample)
    before = pads.dataset(str(feature_partition_dir(lake_dir, table, previous))).to_table(  # the sample's entities
        columns=keys + features, filter=pads.field(keys[0]).isin(pc.unique(today[keys[0]])))
    before = before.rename_columns(keys + [PREV + f for f in features]).append_column(
        PREV, pa.array(np.ones(before.num_rows, dtype=bool)))
    joined = today.join(before, keys=keys, join_type="left outer")
    new = joined[PREV].is_null().to_numpy(zero_copy_only=False)
    changed = np.column_stack([new | ~_same(joined[f], joined[PREV + f]) for f in features])
    keep = changed.any(axis=1)
    return joined.select(today.column_names).filter(pa.array(keep)), changed[keep]


def _same(a: pa.ChunkedArray, b: pa.ChunkedArray) -> np.ndarray:
    x, y = (pc.fill_null(col.cast(pa.float64()), np.nan).to_numpy() for col in (a, b))
    return (x == y) | (np.isnan(x) & np.isnan(y))


def make_requests(settings, day: str, seed: int = 7) -> list[tuple[np.ndarray, np.ndarray, np.ndarray]]:
    rng = np.random.default_rng(seed)
    posts = pads.dataset(str(feature_partition_dir(settings.lake_dir, POST, day))).to_table(
        columns=[c.POST_ID]).to_pandas()
    authors_of = pads.dataset(str(settings.lake_dir / "posts")).to_table(
        columns=[c.POST_ID, c.AUTHOR_ID]).to_pandas().drop_duplicates(c.POST_ID).set_index(c.POST_ID)[c.AUTHOR_ID]
    posts[c.AUTHOR_ID] = authors_of.reindex(posts[c.POST_ID]).to_numpy()
    by_author = posts.groupby(c.AUTHOR_ID)[c.POST_ID].apply(np.asarray)
    pairs = pads.dataset(str(feature_partition_dir(settings.lake_dir, RELATIONSHIP, day))).to_table(
        columns=[c.VIEWER_ID, c.AUTHOR_ID, "is_following"]).to_pandas()
    follows = pairs[pairs["is_following"] > 0].groupby(c.VIEWER_ID)[c.AUTHOR_ID].apply(np.asarray)
    heavy = follows[follows.map(len) >= 20].index.to_numpy()
    requests = []
    for viewer in rng.choice(heavy, size=min(REQUESTS, len(heavy)), replace=False):
        followed = [by_author[a] for a in follows[viewer] if a in by_author.index]
        in_network = np.concatenate(followed)[: CANDIDATES // 2] if followed else np.array([], dtype=np.int64)
        rest = rng.choice(posts[c.POST_ID].to_numpy(), size=CANDIDATES - len(in_network), replace=False)
        post_ids = np.concatenate([in_network, rest]).astype(np.int64)
        author_ids = authors_of.reindex(post_ids).to_numpy().astype(np.int64)
        requests.append((np.full(CANDIDATES, viewer, dtype=np.int64), author_ids, post_ids))
    return requests


def main(argv: list[str]) -> None:
    """`--world tiny` smoke-tests the benchmark itself in a minute; results count on medium."""
    settings = bench_settings(argv[argv.index("--world") + 1] if "--world" in argv else WORLD)
    start = time.perf_counter()
    world = ensure_lake(settings)
    prepare_s = round(time.perf_counter() - start, 1)
    day = world["days"][-1]
    request_ts = int(day_end(day).timestamp()) + 9 * 3600
    with tempfile.TemporaryDirectory() as tmp, EmbeddedRedis(data_dir=Path(tmp)) as redis:
        with PeakRss() as rss:  # the daily pipeline's, not the measurements' after it
            start = time.perf_counter()
            assets, online = run_daily_pipeline(settings, world["days"][-2], day, redis.url)
            pipeline_wall = round(time.perf_counter() - start, 2)
            client = redis_py.Redis.from_url(redis.url)
            redis_rss_mb = client.info("memory")["used_memory_rss"] / 2**20

        store = build_resources(settings, redis.url)["feast"].store()
        today = online[day]
        written = {name: n for name, n in today["written"].items() if n}
        top = ceiling(store, client, day, world["days"][-2], settings.lake_dir, written)
        reader = RankingFeatureReader(store)
        requests = make_requests(settings, day)
        for viewers, authors, posts in requests[:3]:
            parity = reader_vs_feast(store, reader, viewers, authors, posts, request_ts)
            assert parity.ok, parity.mismatched[:5]
        service = store.get_feature_service(SERVICE_NAME)
        rows = [
            [{c.VIEWER_ID: int(v), c.AUTHOR_ID: int(a), c.POST_ID: int(p), REQUEST_TS: request_ts}
             for v, a, p in zip(*request)]
            for request in requests
        ]

        def feast_read(k: int) -> None:
            store.get_online_features(features=service, entity_rows=rows[k % len(rows)],
                                      full_feature_names=True).to_dict()

        def fast_read(k: int) -> None:
            reader.read(*requests[k % len(requests)], request_ts_s=request_ts)

        for k in range(3):  # warm both paths
            feast_read(k)
            fast_read(k)
        feast_s, fast_s, first_after = interleaved(feast_read, fast_read, rounds=8)
        found = reader.read_stored(*requests[0])

    entities = sum(today["written"].values())
    per_s = entities / today["refresh_s"] if today["refresh_s"] else None
    result = {
        "world": settings.world,
        "day": day,
        "online_refresh_s": today["refresh_s"],
        "online_entities": entities,
        "online_entities_per_s": round(per_s) if per_s else None,
        "online_ceiling_entities_per_s": top["entities_per_s"],
        "online_of_ceiling": round(per_s / top["entities_per_s"], 2) if per_s and top["entities_per_s"] else None,
        "changed_fraction": today["changed_fraction"],
        "changed_field_fraction": today["changed_field_fraction"],
        "online_mode": today["mode"],
        "online_full_refresh": {k: online[d][k] for d in online if d != day
                                for k in ("refresh_s", "written", "mode")},
        "online_ceiling_by_view": top["entities_per_s_by_view"],
        "entities": CANDIDATES,
        "features": len(reader.feature_names),
        "fast_p50_ms": ms_percentile(fast_s, 50),
        "fast_p99_ms": ms_percentile(fast_s, 99),
        "fast_calls": len(fast_s),
        "fast_first_after_feast_p50_ms": ms_percentile(first_after, 50),
        "feast_p50_ms": ms_percentile(feast_s, 50),
        "feast_p99_ms": ms_percentile(feast_s, 99),
        "feast_calls": len(feast_s),
        "speedup_p50": round(ms_percentile(feast_s, 50) / ms_percentile(fast_s, 50), 1),
        "found_rate_by_view": dict(zip(found.view_names, found.view_found.mean(axis=0).round(3).tolist())),
        "pipeline_wall_s": pipeline_wall,
        "assets": assets,
        "world_prepare_s": prepare_s,
        "peak_rss_mb": rss.peak_mb,  # during the pipeline, this process and its children: Spark, its workers, Redis
        "redis_rss_mb_at_end": round(redis_rss_mb, 1),
        "pipeline_peak_rss_mb": round(rss.peak_mb - redis_rss_mb, 1),  # less the server's own at the end
    }
    if settings.world == WORLD:
        write_result("features", result)
    else:
        print(json.dumps(result, indent=2))


if __name__ == "__main__":
    main(sys.argv[1:])
