"""The landing sensor asks for a day's ingestion when its files appear or change, once."""

import os

import dagster as dg

from pipelines.defs.ingest import defs as ingest_defs
from pipelines.defs.ingest.sensors import landing_sensor
from pipelines.resources import SparkResource, WorkspaceResource


def evaluate(workspace, cursor=None):
    context = dg.build_sensor_context(
        cursor=cursor,
        resources={"workspace": workspace},
        definitions=dg.Definitions.merge(
            ingest_defs, dg.Definitions(resources={"workspace": workspace, "spark": SparkResource()})
        ),
    )
    data = landing_sensor.evaluate_tick(context)
    return [r.partition_key for r in data.run_requests], data.cursor


def test_new_and_changed_landing_days_are_requested_once(tmp_path):
    landing = tmp_path / "landing"
    for log, day in [("users", "2026-10-01"), ("engagements", "2026-10-01"), ("engagements", "2026-10-02")]:
        (landing / log / day).mkdir(parents=True)
        (landing / log / day / "part-00000.jsonl").write_text('{"a": 1}\n')
    (landing / "engagements" / "2026-10-02" / "notes.txt").write_text("not a landing file")
    workspace = WorkspaceResource(landing_dir=str(landing), lake_dir=str(tmp_path / "lake"),
                                  truth_dir=str(tmp_path / "truth"))

    days, cursor = evaluate(workspace)
    assert days == ["2026-10-01", "2026-10-02"]
    assert evaluate(workspace, cursor)[0] == []

    changed = landing / "engagements" / "2026-10-02" / "part-00000.jsonl"
    changed.write_text('{"a": 1}\n{"a": 2}\n')
    os.utime(changed, ns=(1, 1))
    assert evaluate(workspace, cursor)[0] == ["2026-10-02"]


def test_a_folder_that_is_not_a_partition_is_skipped(tmp_path):
    landing = tmp_path / "landing"
    (landing / "users" / "1999-01-01").mkdir(parents=True)
    (landing / "users" / "1999-01-01" / "part-00000.jsonl").write_text("{}\n")
    workspace = WorkspaceResource(landing_dir=str(landing), lake_dir=str(tmp_path / "lake"),
                                  truth_dir=str(tmp_path / "truth"))
    assert evaluate(workspace)[0] == []
