"""The online store's writers on a Redis Cluster against one server, and against their ceilings.

    uv run python -m benchmarks.bench_online_cluster [--posts 50000] [--pairs 300000] [--repeats 3]

The same generated Feast repo (features/online/sample_repo.py: post, author, viewer and
viewer-author views, ~6-10 features each, nulls) on one embedded Valkey server and on a
three-primary Valkey cluster on loopback (the same 2 cores). Per deployment, in one run:
- `write_window`, the bulk writer (pre-encoded commands; on a cluster routed per node), every view's
  full window into an empty store: median of `--repeats`;
- its ceiling: the same bytes encoded ahead (Feast's hash + packed record of every row; one SET per
  packed record on a cluster, one MSET per batch on one server) and sent raw by the same sender;
- `refresh_window`, the daily path from Spark (a full refresh, after one that warms Spark up);
- on the cluster, the path the writers took there before: Feast's materialize + the read-back
  (`materialize_packed`), on the post view only (it writes ~2-3k entities/s).
Results: benchmarks/results/online_cluster.json.
"""

from __future__ import annotations

import argparse
import dataclasses
import statistics
import tempfile
import time
from pathlib import Path

import pyarrow as pa

from benchmarks.common import write_result
from data.redis_client import connect
from data.redis_cluster import EmbeddedCluster
from data.redis_server import EmbeddedRedis
from data.spark import build_spark_session
from features.online import PackedViewWriter, materialize_packed
from features.online.bulk_write import write_window
from features.online.encode import ViewEncoder, epoch_us
from features.online.sample_repo import ANCHOR, EVENT_TS, SampleSizes, build_sample_repo
from features.online.spark_write import refresh_window
from features.online.transport import sender_for

WINDOW = (ANCHOR.replace(year=ANCHOR.year - 1), ANCHOR)
BATCH_ROWS = 20_000


def ceiling(repo, client, views: list[str]) -> float:
    """Entities per second of the refresh's own bytes, encoded ahead and sent by the writers' sender."""
    writer, sender = PackedViewWriter(repo.store, client), sender_for(client)
    sends, entities = [], 0
    for name in views:
        encoder = ViewEncoder.of(writer, repo.store.get_feature_view(name))
        frame = repo.frames[name].sort_values(EVENT_TS).drop_duplicates(list(encoder.key_types), keep="last")
        table = pa.Table.from_pandas(frame, preserve_index=False)
        for batch in table.to_batches(max_chunksize=BATCH_ROWS):
            sends.append(encoder.write_commands(batch, epoch_us(batch.column(EVENT_TS)), per_key=sender.per_key))
        entities += table.num_rows
    client.flushall()
    start = time.perf_counter()
    for keys, commands in sends:
        sender.send(keys, commands)
    return entities / (time.perf_counter() - start)


def deployment(name: str, url: str, root: Path, sizes: SampleSizes, repeats: int, spark) -> dict:
    repo = build_sample_repo(root / name, url, project="bench_oc", sizes=sizes)
    client = connect(url)
    views = list(repo.views)
    entities = sum(repo.frames[v].drop_duplicates([f.name for f in fv.entity_columns]).shape[0]
                   for v, fv in repo.views.items())
    bulk_s = []
    for _ in range(repeats):
        client.flushall()
        start = time.perf_counter()
        write_window(repo.store, *WINDOW, views, client=client, batch_rows=BATCH_ROWS)
        bulk_s.append(time.perf_counter() - start)
    ceilings = [ceiling(repo, client, views) for _ in range(repeats)]
    for _ in range(2):  # the first warms Spark's Python workers up; the second is timed
        client.flushall()
        start = time.perf_counter()
        refreshed = refresh_window(spark, repo.store, *WINDOW, views, client=client, incremental=False)
        spark_s = time.perf_counter() - start
    assert sum(r.written for r in refreshed.values()) == entities, refreshed
    bulk = statistics.median(bulk_s)
    out = {
        "entities": entities,
        "write_window_s": round(bulk, 2),
        "write_window_entities_per_s": round(entities / bulk),
        "ceiling_entities_per_s": round(statistics.median(ceilings)),
        "write_window_of_ceiling": round(entities / bulk / statistics.median(ceilings), 2),
        "spark_refresh_s": round(spark_s, 2),
        "spark_refresh_entities_per_s": round(entities / spark_s),
    }
    if name == "cluster":  # the path a cluster took before: Feast's materialize + read-back
        client.flushall()
        start = time.perf_counter()
        stats = materialize_packed(repo.store, *WINDOW, ["post_stats"], client=client)
        seconds = time.perf_counter() - start
        out["feast_materialize_post_view_entities_per_s"] = round(stats["post_stats"].written / seconds)
        out["write_window_over_feast_materialize"] = round(
            out["write_window_entities_per_s"] / out["feast_materialize_post_view_entities_per_s"], 1)
    client.flushall()
    return out


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--posts", type=int, default=50_000)
    parser.add_argument("--pairs", type=int, default=300_000)
    parser.add_argument("--repeats", type=int, default=3)
    args = parser.parse_args()
    sizes = SampleSizes(posts=args.posts, authors=args.posts // 5, viewers=args.posts // 2, pairs=args.pairs,
                        rows_per_entity=1)
    spark = build_spark_session(app_name="bench-online-cluster")
    result: dict = {"sizes": dataclasses.asdict(sizes), "primaries": 3}
    with tempfile.TemporaryDirectory(prefix="bench_oc_") as tmp:
        root = Path(tmp)
        with EmbeddedRedis(data_dir=root / "server") as server:
            result["one_server"] = deployment("server", server.url, root, sizes, args.repeats, spark)
        with EmbeddedCluster(primaries=3, data_dir=root / "cluster_nodes") as cluster:
            result["cluster"] = deployment("cluster", cluster.url, root, sizes, args.repeats, spark)
    one, many = result["one_server"], result["cluster"]
    result["cluster_over_one_server"] = {
        "write_window": round(many["write_window_entities_per_s"] / one["write_window_entities_per_s"], 2),
        "ceiling": round(many["ceiling_entities_per_s"] / one["ceiling_entities_per_s"], 2),
        "spark_refresh": round(many["spark_refresh_entities_per_s"] / one["spark_refresh_entities_per_s"], 2),
    }
    spark.stop()
    write_result("online_cluster", result)


if __name__ == "__main__":
    main()
