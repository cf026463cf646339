"""The landing sensor asks for a day's ingestion when its files appear or change, once, and registers
each new day as a partition, whatever its date."""

import os

import dagster as dg

from pipelines.defs.ingest.definitions import defs as ingest_defs
from pipelines.defs.ingest.sensors import landing_sensor
from pipelines.resources import SparkResource, WorkspaceResource


def evaluate(workspace, instance, cursor=None):
    # an instance with a ref (instance_for_test): how the daemon runs sensors, so the sensor's own
    # partition requests count when its run requests are validated
    with dg.build_sensor_context(
        cursor=cursor,
        instance=instance,
        instance_ref=instance.get_ref(),
        resources={"workspace": workspace},
        definitions=dg.Definitions.merge(
            ingest_defs, dg.Definitions(resources={"workspace": workspace, "spark": SparkResource()})
        ),
    ) as context:
        # exited: Dagster sets the instance's state storage as the process's current one for a context's
        # life (left set, it outlives the instance and later materializations fail on its weakref)
        data = landing_sensor.evaluate_tick(context)
    added = [key for request in data.dynamic_partitions_requests or [] for key in request.partition_keys]
    return [r.partition_key for r in data.run_requests], data.cursor, added


def landed(tmp_path, folders: list[tuple[str, str]]) -> tuple:
    """A landing folder with one file per (log, day folder), and the workspace reading it."""
    landing = tmp_path / "landing"
    for log, folder in folders:
        (landing / log / folder).mkdir(parents=True)
        (landing / log / folder / "part-00000.jsonl").write_text('{"a": 1}\n')
    return landing, WorkspaceResource(landing_dir=str(landing), lake_dir=str(tmp_path / "lake"),
                                      truth_dir=str(tmp_path / "truth"))


def change(path) -> None:
    """New content and an old mtime: the size alone tells the fingerprint."""
    path.write_text('{"a": 1}\n{"a": 2}\n')
    os.utime(path, ns=(1, 1))


def test_new_and_changed_landing_days_are_requested_once(tmp_path):
    landing, workspace = landed(tmp_path, [("users", "2026-10-01"), ("engagements", "2026-10-01"),
                                           ("engagements", "2026-10-02")])
    (landing / "engagements" / "2026-10-02" / "notes.txt").write_text("not a landing file")

    with dg.instance_for_test() as instance:
        days, cursor, added = evaluate(workspace, instance)
        assert days == added == ["2026-10-01", "2026-10-02"]
        assert evaluate(workspace, instance, cursor)[0] == []

    change(landing / "engagements" / "2026-10-02" / "part-00000.jsonl")
    with dg.instance_for_test() as instance:
        assert evaluate(workspace, instance, cursor)[0] == ["2026-10-02"]


def test_any_date_is_a_day_and_a_folder_that_is_not_a_day_is_skipped(tmp_path):
    _, workspace = landed(tmp_path, [("users", folder) for folder in ("1999-01-01", "latest", "2019-02-30")])
    with dg.instance_for_test() as instance:
        days, _, added = evaluate(workspace, instance)
        assert days == added == ["1999-01-01"]
        instance.add_dynamic_partitions("day", ["1999-01-01"])
        assert evaluate(workspace, instance)[2] == []  # registered once


def test_a_sensor_without_cursor_skips_days_ingested_as_they_are(tmp_path):
    """Started after `make run` (or with its cursor reset), the sensor asks only for days whose files
    differ from what their last ingestion recorded reading."""
    from data.ingest.fingerprints import landing_fingerprints
    from pipelines.defs.ingest.assets import LANDING_FINGERPRINTS, lake_key

    landing, workspace = landed(tmp_path, [("engagements", day) for day in ("2026-10-01", "2026-10-02", "2026-10-03")])
    read = landing_fingerprints(landing, ["2026-10-01", "2026-10-02"])
    assert set(read) == {"2026-10-01", "2026-10-02"}  # only the days asked for
    with dg.instance_for_test() as instance:
        instance.add_dynamic_partitions("day", ["2026-10-01", "2026-10-02"])
        for day in ("2026-10-01", "2026-10-02"):  # what an ingest run records, one day each
            instance.report_runless_asset_event(dg.AssetMaterialization(
                asset_key=lake_key("engagements"), partition=day, metadata={LANDING_FINGERPRINTS: {day: read[day]}}))
        change(landing / "engagements" / "2026-10-02" / "part-00000.jsonl")
        days, cursor, added = evaluate(workspace, instance)
        assert days == ["2026-10-02", "2026-10-03"] and added == ["2026-10-03"]
        assert evaluate(workspace, instance, cursor)[0] == []
