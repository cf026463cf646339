"""Ingest domain (Dagster wiring only; the domain code is data/ingest/): landing JSONL -> validated
Parquet lake, quarantine, reconcile checks.

assets.py       one lake asset per log, partitioned by landing day, with its blocking checks
jobs.py         ingest_job: one landing day of every log
sensors.py      landing_sensor: registers and ingests a day when its landing files appear or change
definitions.py  the domain's Definitions (merged by pipelines/definitions.py)
"""
