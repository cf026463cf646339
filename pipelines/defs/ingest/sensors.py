"""Triggers for ingestion: a sensor for files landing (or changing), which also registers each new
landing day as a partition (days come from the data, not from a calendar); and the event stream's
archiver, which lands the stream into the landing folder (where the first sensor then sees it)."""


import json

import dagster as dg

from data.contracts import LOG_TYPES
from data.ingest.fingerprints import landing_fingerprints
from data.redis_client import FAILURES, is_outage
from data.stream.archiver import ArchiverBusy, StreamArchiver
from data.stream.backlog import GROWING_TICKS, Backlog, growing
from pipelines.defs.ingest.assets import LANDING_FINGERPRINTS, STREAM_KEY, lake_key
from pipelines.defs.ingest.jobs import ingest_job
from pipelines.defs.ingest.resources import StreamResource
from pipelines.partitions import DAYS, day_partitions, is_day
from pipelines.resources import WorkspaceResource


def ingested_fingerprint(instance: dg.DagsterInstance, day: str) -> str | None:
    """The landing fingerprint the latest ingestion of `day` recorded on this instance (None: not
    ingested here, or before ingestion recorded it)."""
    for log in LOG_TYPES:
        records = instance.fetch_materializations(
            dg.AssetRecordsFilter(asset_key=lake_key(log), asset_partitions=[day]), limit=1).records
        if records:
            value = records[0].asset_materialization.metadata.get(LANDING_FINGERPRINTS)
            return value.value.get(day) if value is not None else None
    return None


@dg.sensor(job=ingest_job, minimum_interval_seconds=60, default_status=dg.DefaultSensorStatus.RUNNING)
def landing_sensor(context: dg.SensorEvaluationContext, workspace: WorkspaceResource):
    """Ingest a day whenever its landing files appear or change (ingestion is idempotent). A day the
    cursor has not seen is compared with what its last ingestion read: a sensor started after `make
    run` (or with its cursor reset) does not ingest every day again."""
    seen = json.loads(context.cursor) if context.cursor else {}
    current = landing_fingerprints(workspace.landing)
    requests, new_days = [], []
    for day, fingerprint in sorted(current.items()):
        known = seen[day] if day in seen else ingested_fingerprint(context.instance, day)
        if known == fingerprint:
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


@dg.sensor(minimum_interval_seconds=30, default_status=dg.DefaultSensorStatus.RUNNING)
def stream_archive_sensor(context: dg.SensorEvaluationContext, stream: StreamResource,
                          workspace: WorkspaceResource):
    """Land what the event stream holds into the landing folder, every entry once, and trim it
    (data/stream/archiver.py); then observe the stream: entries held and each consumer group's
    backlog, flagging a group whose backlog grew at each of the last GROWING_TICKS ticks (its
    consumers fall behind, or died with entries pending). The work is the sensor's own, not a run's:
    a few file appends, where a run would start a process every 30 s. No stream server reachable:
    skipped, saying so."""
    try:
        events = stream.stream()
        report = StreamArchiver(events, workspace.landing).archive()
        backlog = Backlog.of(events)
    except FAILURES as exc:
        if not is_outage(exc):
            raise
        return dg.SkipReason(f"no event stream at {stream.url}: {exc}")
    except ArchiverBusy as exc:
        return dg.SkipReason(str(exc))
    history = json.loads(context.cursor) if context.cursor else {}
    history = {g: (history.get(g, []) + [lag.backlog])[-(GROWING_TICKS + 1):] for g, lag in backlog.groups.items()}
    rising = sorted(g for g, seen in history.items() if growing(seen))
    if rising:
        context.log.warning(f"event stream: the backlog of {rising} grew at each of the last {GROWING_TICKS} "
                            f"ticks ({ {g: history[g] for g in rising} }): its consumers fall behind")
    message = f"archived {report.entries} entries into {workspace.landing}, trimmed {report.trimmed}"
    if rising:
        message += f"; backlog growing: {', '.join(rising)}"
    return dg.SensorResult(
        skip_reason=message,
        cursor=json.dumps(history),
        asset_events=[dg.AssetObservation(asset_key=STREAM_KEY, metadata={
            "entries": backlog.entries,
            "archived": report.entries,
            "backlog": {g: {"undelivered": lag.undelivered, "pending": lag.pending}
                        for g, lag in backlog.groups.items()},
            "growing": rising,
        })],
    )
