"""Ingest: a landing day of one log into the lake (read, validate, dedupe, write, count).

landing.py       Loupe's own read of a landing day folder, before Spark: every physical line counted
validation.py    the contract's rules in Spark: landed, quarantined with a reason, or a duplicate
partition.py     one (log, day) partition end to end, with its report (`ingest_partition`)
config.py        the ingest config (config.toml, section [ingest])
fingerprints.py  what changed in a landing folder, per day (the landing sensor compares them)

The Dagster assets, checks, job and sensor that run it are in pipelines/defs/ingest/.
"""
