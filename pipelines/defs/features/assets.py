"""Feature tables (Spark, daily), the real-time views' offline rows (replayed from the lake), the
Feast registry, and the online store per day with its checks."""

import contextlib
import io
import re
import time
from datetime import timedelta

import dagster as dg
import numpy as np
import pyarrow.dataset as pads

from data import columns as c
from data.days import day_end
from features.jobs.inputs import MissingInputError
from features.online.packer import redis_client_for
from features.online.parity import Parity, online_vs_offline, reader_vs_feast
from features.online.ranking import RankingFeatureReader
from features.online.spark_write import refresh_window, refreshed_window
from features.snapshots import READS_SNAPSHOTS, SNAPSHOT_TABLES, lake_inputs, write_snapshots
from features.storage import feature_partition_dir
from features.store import apply
from features.streaming.backfill import backfill_days, registry_lake
from features.streaming.warm_start import warm_start
from features.tables import POST, RELATIONSHIP, TABLES, FeatureTable
from pipelines.defs.ingest.assets import lake_key
from pipelines.defs.ingest.resources import StreamResource
from pipelines.job_steps import end_step
from pipelines.partitions import day_partitions
from pipelines.resources import FeastResource, SparkResource, WorkspaceResource

GROUP = "features"
ANSI_STYLE = re.compile(r"\x1b\[[0-9;]*m")
SAMPLE = 200  # entities per view the online checks compare


def feature_key(table: FeatureTable) -> dg.AssetKey:
    return dg.AssetKey(["features", table.name])


def _snapshot_spec(table: FeatureTable) -> dg.AssetSpec:
    deps = [lake_key(log) for log in lake_inputs(table)]
    deps += [feature_key(TABLES[name]) for name in sorted(READS_SNAPSHOTS.get(table.name, ()))]
    return dg.AssetSpec(
        key=feature_key(table),
        group_name=GROUP,
        deps=deps,
        kinds={"spark", "parquet"},
        description=table.description + " Snapshot of one day: events before its end only.",
        skippable=True,  # a table whose job failed, or waited on one that did, is not materialized
    )


@dg.multi_asset(
    name="feature_snapshots",
    specs=[_snapshot_spec(t) for t in SNAPSHOT_TABLES],
    partitions_def=day_partitions,
    can_subset=True,
    description="A day's feature tables, one Spark step: the tables' jobs run concurrently "
    "(features/snapshots.py), each after the snapshots it reads.",
)
def feature_snapshots(context: dg.AssetExecutionContext, spark: SparkResource, workspace: WorkspaceResource):
    day = context.partition_key
    selected = [t for t in SNAPSHOT_TABLES if feature_key(t) in context.selected_asset_keys]
    outcomes = []
    for outcome in write_snapshots(spark.session(), workspace.lake, day, selected, spark.concurrent_jobs):
        outcomes.append(outcome)
        if outcome.result is not None:
            table = TABLES[outcome.name]
            yield dg.MaterializeResult(
                asset_key=feature_key(table),
                metadata={
                    "dagster/row_count": pads.dataset(str(outcome.result.path), format="parquet").count_rows(),
                    "features": len(table.features),
                    "path": dg.MetadataValue.path(str(outcome.result.path)),
                    "seconds": outcome.result.seconds,  # its own job's; the day's jobs overlap
                    "event_timestamp": day_end(day).isoformat(),
                },
            )
    end_step(outcomes, MissingInputError, f"feature snapshots of {day}")


# the list every caller materializes (one multi-asset: select tables with `selection=`)
feature_assets = [feature_snapshots]
REGISTRY_KEY = dg.AssetKey(["feast", "registry"])
REALTIME_KEY = dg.AssetKey(["features", "realtime"])


@dg.asset(
    key=REALTIME_KEY,
    group_name=GROUP,
    partitions_def=day_partitions,
    backfill_policy=dg.BackfillPolicy.single_run(),  # a range of days is one replay, not one per day
    deps=[lake_key("engagements"), REGISTRY_KEY],
    kinds={"pandas", "parquet"},
    description="The rows the stream feature worker writes online (post_realtime, author_realtime, "
    "viewer_author_today), replayed from the lake's engagements by the worker's own definitions "
    "(features/streaming/backfill.py) with the day before filling the windows: Feast's "
    "point-in-time retrieval of them at t is what the online store held at t. A training day "
    "needs its own rows and the day before's (rows live a day). Written where the registry's push "
    "sources read (the workspace lake's features/realtime/<view>/<day>.parquet).",
)
def realtime_rows(context: dg.AssetExecutionContext, feast: FeastResource,
                  workspace: WorkspaceResource) -> dg.MaterializeResult:
    days = sorted(context.partition_keys)
    written = backfill_days(workspace.lake, days, workspace.vocabulary(), registry_lake(feast.store()))
    for day, views in written.items():
        context.log.info(f"real-time rows of {day}: {views}")
    return dg.MaterializeResult(metadata={
        "dagster/row_count": sum(sum(views.values()) for views in written.values()),
        "rows_per_day_and_view": dg.MetadataValue.json(written),
    })

ONLINE_KEY = dg.AssetKey(["feast", "online"])


@dg.asset(key=REGISTRY_KEY, group_name=GROUP, kinds={"feast"},
          description="`feast apply`: entities, feature views, on-demand view, the feature services.")
def feast_registry(feast: FeastResource, workspace: WorkspaceResource) -> dg.MaterializeResult:
    repo = apply(feast.store(), workspace.lake)
    return dg.MaterializeResult(metadata={
        "feature_views": sorted(repo.views),
        "feature_services": {s.name: sum(len(p.features) for p in s.feature_view_projections)
                             for s in (repo.feed_ranker_v1, repo.feed_ranker_v2)},
    })


def _snapshot_sample(workspace: WorkspaceResource, table: FeatureTable, day: str, seed: int):
    """SAMPLE random rows of a day's snapshot, read by index (a medium pair snapshot is ~5M rows)."""
    dataset = pads.dataset(str(feature_partition_dir(workspace.lake, table, day)), format="parquet")
    total = dataset.count_rows()
    if not total:  # an empty snapshot (e.g. viewer_tags without engagements): nothing to compare
        return dataset.schema.empty_table().to_pandas()
    rows = np.random.default_rng(seed).choice(total, size=min(SAMPLE, total), replace=False)
    return dataset.take(np.sort(rows)).to_pandas()


@dg.asset(
    key=ONLINE_KEY,
    group_name=GROUP,
    partitions_def=day_partitions,
    deps=[REGISTRY_KEY, *[feature_key(t) for t in TABLES.values()]],
    kinds={"feast", "redis"},
    check_specs=[
        dg.AssetCheckSpec("online_matches_offline", asset=ONLINE_KEY, blocking=True,
                          description="For sampled entities, Feast's online values equal the day's "
                          "offline snapshot, and the fast reader equals get_online_features."),
        dg.AssetCheckSpec("online_is_fresh", asset=ONLINE_KEY,
                          description="The online store holds this day's snapshot, not an older one."),
    ],
    description="One day's snapshots into Feast's Redis online store and the packed view the "
    "ranking service reads (docs/online_reader.md).",
)
def feast_online(context: dg.AssetExecutionContext, feast: FeastResource, spark: SparkResource,
                workspace: WorkspaceResource):
    day = context.partition_key
    end = day_end(day)
    store = feast.store()
    # what this online store was refreshed with (its own markers: the registry's materialization
    # intervals outlive a flushed or replaced store)
    online = redis_client_for(store)  # one client for the markers read here
    latest = max((r.end for name in TABLES if (r := refreshed_window(store, name, online))), default=None)
    if latest is not None and latest > end:
        # A newer day is online already: materializing an older snapshot would only be skipped
        # row by row by Feast; say so instead of pretending to refresh.
        context.log.info(f"{day} superseded by an online snapshot up to {latest}; nothing to do")
        return dg.MaterializeResult(
            metadata={"skipped": True, "online_up_to": latest.isoformat()},
            check_results=[
                dg.AssetCheckResult(check_name="online_matches_offline", passed=True, metadata={"skipped": True}),
                dg.AssetCheckResult(check_name="online_is_fresh", passed=True, metadata={"skipped": True}),
            ],
        )
    refreshed = {}
    started = time.perf_counter()
    # Feast's materialize (for a view Spark leaves to it) prints a coloured banner and a line per
    # view to stdout, with no switch to turn it off: the run's log keeps it, not the console
    with contextlib.redirect_stdout(io.StringIO()) as printed:
        for days in sorted({t.materialize_days for t in TABLES.values()}):
            views = [t.name for t in TABLES.values() if t.materialize_days == days]
            refreshed.update(refresh_window(spark.session(), store, end - timedelta(days=days), end, views))
    refresh_s = time.perf_counter() - started
    if text := ANSI_STYLE.sub("", printed.getvalue()).strip():
        context.log.info(f"feast materialize:\n{text}")
    for r in refreshed.values():
        context.log.info(f"{r.view}: {r.mode}; {r.rows} newer rows, {r.written} written, {r.unchanged} unchanged, "
                         f"{r.kept} kept by Feast's staleness rule, {r.repacked} repacked")

    # online == offline, per view
    seed = int(end.timestamp()) % 2**31
    mismatches, cells, empty = [], 0, []
    samples = {}
    for table in TABLES.values():
        samples[table.name] = sample = _snapshot_sample(workspace, table, day, seed)
        if sample.empty:
            empty.append(table.name)
            continue
        parity = online_vs_offline(store, table, sample)
        cells += parity.cells
        mismatches += [f"{table.name}: {m}" for m in parity.mismatched[:5]]
    # fast reader == Feast, on candidates built from sampled pairs and posts
    pairs, posts = samples[RELATIONSHIP.name], samples[POST.name]
    n = min(len(pairs), len(posts))
    reader = RankingFeatureReader(store)
    fast = reader_vs_feast(store, reader, pairs[c.VIEWER_ID].values[:n], pairs[c.AUTHOR_ID].values[:n],
                           posts[c.POST_ID].values[:n], int(end.timestamp())) if n else Parity()
    mismatches += [f"reader: {m}" for m in fast.mismatched[:5]]

    # freshness: every view's refresh reached this day's end, and no sampled online row is newer
    # than it. A row carries the snapshot time of the day its values last changed (the refresh
    # leaves unchanged rows alone, features/online/spark_write.py): the parity check above says
    # its values are this day's.
    behind = {name: str(r.end) if r else None for name in TABLES
              if (r := refreshed_window(store, name, online)) is None or r.end < end}
    ts = np.zeros(0, dtype=np.int64)
    if n:
        block = reader.read_stored(pairs[c.VIEWER_ID].values[:n], pairs[c.AUTHOR_ID].values[:n],
                                   posts[c.POST_ID].values[:n])
        daily = np.array([not TABLES[v].stamped_at_creation for v in block.view_names])
        ts = block.event_ts_us[:, daily][block.view_found[:, daily]]
    end_us = int(end.timestamp() * 1_000_000)
    fresh = not behind and bool(np.all(ts <= end_us))
    return dg.MaterializeResult(
        metadata={
            "refresh_s": round(refresh_s, 1),
            "written": {name: r.written for name, r in refreshed.items()},
            "changed_fraction": {name: round(r.changed_fraction, 4) for name, r in refreshed.items()},
            "changed_field_fraction": {name: round(r.changed_field_fraction, 4) for name, r in refreshed.items()},
            "mode": {name: r.mode for name, r in refreshed.items()},
            "dagster/row_count": sum(r.written for r in refreshed.values()),
            "snapshot": end.isoformat(),
        },
        check_results=[
            dg.AssetCheckResult(
                check_name="online_matches_offline",
                passed=not mismatches,
                metadata={"cells_compared": cells + fast.cells, "mismatches": mismatches[:20],
                          "empty_snapshots": empty},
            ),
            dg.AssetCheckResult(
                check_name="online_is_fresh",
                passed=fresh,
                severity=dg.AssetCheckSeverity.WARN,
                metadata={"expected_snapshot": end.isoformat(), "views_behind": behind,
                          "rows_checked": int(len(ts)), "rows_of_this_day": int((ts == end_us).sum())},
            ),
        ],
    )


REALTIME_ONLINE_KEY = dg.AssetKey(["feast", "realtime_online"])


@dg.asset(
    key=REALTIME_ONLINE_KEY,
    group_name=GROUP,
    partitions_def=day_partitions,
    deps=[lake_key("engagements"), REGISTRY_KEY],
    kinds={"redis"},
    description="The real-time views online for a store the stream has not fed (a workspace built "
    "from exports): the stream worker's state and rows as if it had counted the lake's engagements "
    "of the day and the day before (features/streaming/warm_start.py), for every post, author and "
    "viewer-author pair the worker does not hold yet; what it holds is left to it.",
)
def realtime_online(context: dg.AssetExecutionContext, feast: FeastResource, workspace: WorkspaceResource,
                    stream: StreamResource) -> dg.MaterializeResult:
    # the worker's keys are tagged by the stream partition owning them: the stream's partition count
    report = warm_start(feast.store(), workspace.lake, context.partition_key, workspace.vocabulary(),
                        partitions=stream.partitions)
    context.log.info(f"real-time state online from the lake's {context.partition_key}: {report}")
    return dg.MaterializeResult(metadata={**report, "dagster/row_count": sum(
        n for name, n in report.items() if name.endswith("_written"))})
