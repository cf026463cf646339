"""Triggers for ingestion: a sensor for files landing (or changing); it also registers each new
landing day as a partition (days come from the data, not from a calendar)."""


import hashlib
import json
from pathlib import Path

import dagster as dg

from data import lake
from data.contracts import LOG_TYPES
from pipelines.defs.ingest.assets import GROUP
from pipelines.partitions import DAYS, day_partitions, is_day
from pipelines.resources import WorkspaceResource

ingest_job = dg.define_asset_job(
    "ingest_job",
    selection=dg.AssetSelection.groups(GROUP),
    description="Validate one landing day of every log into the lake.",
)



def landing_fingerprints(landing_dir: Path) -> dict[str, str]:
    """Day -> a hash of the names, sizes and mtimes of everything in its landing folders (files
    ingestion ignores too: they fail the day's check), across logs."""
    by_day: dict[str, list[str]] = {}
    for log_type in LOG_TYPES:
        root = Path(landing_dir) / log_type
        if not root.is_dir():
            continue
        for day_dir in root.iterdir():
            for path in lake.landing_files(landing_dir, log_type, day_dir.name):
                try:
                    stat = path.stat()
                except OSError:  # a broken link: ingestion names it as ignored
                    stat = path.lstat()
                by_day.setdefault(day_dir.name, []).append(
                    f"{log_type}/{path.name}:{stat.st_size}:{stat.st_mtime_ns}"
                )
    return {
        day: hashlib.sha1("\n".join(sorted(items)).encode()).hexdigest()[:16]
        for day, items in by_day.items()
    }


@dg.sensor(job=ingest_job, minimum_interval_seconds=60, default_status=dg.DefaultSensorStatus.STOPPED)
def landing_sensor(context: dg.SensorEvaluationContext, workspace: WorkspaceResource):
    """Ingest a day again whenever its landing files appear or change (ingestion is idempotent)."""
    seen = json.loads(context.cursor) if context.cursor else {}
    current = landing_fingerprints(workspace.landing)
    requests, new_days = [], []
    for day, fingerprint in sorted(current.items()):
        if seen.get(day) == fingerprint:
            continue
        if not is_day(day):
            context.log.warning(f"landing folder {day!r} is not a day (YYYY-MM-DD); skipped")
            continue
        if not context.instance.has_dynamic_partition(DAYS, day):
            new_days.append(day)
        requests.append(dg.RunRequest(run_key=f"ingest:{day}:{fingerprint}", partition_key=day))
    return dg.SensorResult(
        run_requests=requests,
        cursor=json.dumps(current, sort_keys=True),
        dynamic_partitions_requests=[day_partitions.build_add_request(new_days)] if new_days else None,
    )
