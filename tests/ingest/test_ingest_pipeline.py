"""Materialize the ingestion assets on the tiny world: totals reconcile with what the simulator
injected, every check passes, and a second run leaves the lake exactly as it was."""

from __future__ import annotations

import hashlib
from collections import Counter
from pathlib import Path

import pyarrow.parquet as pq
import pytest

from data.contracts import LOG_TYPES
from tests.ingest.helpers import materialize_ingest


def lake_digest(lake_dir: Path, table: str) -> str:
    """Order-independent digest of a lake table's rows."""
    frame = pq.read_table(lake_dir / table).to_pandas()
    rows = sorted(map(repr, frame.astype(str).itertuples(index=False)))
    return hashlib.sha256("\n".join(rows).encode()).hexdigest()


@pytest.fixture(scope="module")
def ingested(tiny_lake):
    return tiny_lake


def totals(runs: dict, log: str) -> Counter:
    total = Counter()
    for meta in runs[log]["meta"]:
        for name in ("rows_read", "rows_landed", "rows_quarantined", "duplicates_dropped"):
            total[name] += meta[name]
        for reason, n in meta["quarantined_by_reason"].items():
            total["reason:" + reason.split(":")[0]] += n
    return total


@pytest.mark.parametrize("log", LOG_TYPES)
def test_counts_reconcile_with_what_the_simulator_wrote(ingested, log):
    settings, summary, runs = ingested
    t = totals(runs, log)
    assert len(runs[log]["meta"]) == len(summary.days)
    # both checks (reconciles, ids_distinct) of every day passed
    assert all(runs[log]["checks"]) and len(runs[log]["checks"]) == 2 * len(summary.days)
    # the simulator's ids are small native integers: nothing to map, nothing to collide
    assert all(meta["ids_mapped"] == 0 for meta in runs[log]["meta"])
    assert t["rows_read"] == summary.rows[log]
    assert t["rows_read"] == t["rows_landed"] + t["rows_quarantined"] + t["duplicates_dropped"]
    dirt = summary.dirt.get(log, {})
    assert t["duplicates_dropped"] == dirt.get("duplicate", 0)
    injected = {k: n for k, n in dirt.items() if k not in ("duplicate", "late") and n}
    found = {k.removeprefix("reason:"): n for k, n in t.items() if k.startswith("reason:")}
    assert found == injected


def test_quarantine_keeps_the_raw_line_and_its_file(ingested):
    settings, summary, _ = ingested
    table = pq.read_table(settings.lake_dir / "quarantine" / "engagements").to_pandas()
    assert len(table) > 0
    assert table["raw_line"].notna().all() and table["reason"].notna().all()
    assert table["source_file"].str.contains("/landing/engagements/").all()


def test_a_second_run_leaves_the_lake_unchanged(ingested):
    settings, summary, first = ingested
    before = {log: lake_digest(settings.lake_dir, log) for log in LOG_TYPES}
    second = materialize_ingest(settings, summary.days)
    after = {log: lake_digest(settings.lake_dir, log) for log in LOG_TYPES}
    assert before == after
    for log in LOG_TYPES:
        assert totals(second, log) == totals(first, log)


def test_one_run_over_every_day_lands_what_a_run_per_day_lands(ingested):
    """`make run`'s ingestion: one Dagster run over the days' range, one Spark pass per log."""
    import dagster as dg

    from pipelines.operations import ingest_days

    settings, summary, per_day = ingested
    before = {log: lake_digest(settings.lake_dir, log) for log in LOG_TYPES}
    with dg.DagsterInstance.ephemeral() as instance:
        ranged = ingest_days(settings, summary.days, instance, on_day=lambda day: None)
        runs = instance.get_runs()
        materialized = instance.get_materialized_partitions(dg.AssetKey(["lake", "users"]))
    assert len(runs) == 1 and materialized == set(summary.days)
    assert {log: lake_digest(settings.lake_dir, log) for log in LOG_TYPES} == before
    for log in LOG_TYPES:
        expected = totals(per_day, log)
        assert {k: ranged[log][k] for k in ("rows_read", "rows_landed", "rows_quarantined", "duplicates_dropped")} \
            == {k: expected[k] for k in ("rows_read", "rows_landed", "rows_quarantined", "duplicates_dropped")}
        assert sum(ranged[log]["quarantined_by_reason"].values()) == expected["rows_quarantined"]
