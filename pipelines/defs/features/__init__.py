"""Features domain (Dagster wiring; the feature jobs are features/jobs/): Spark feature tables per
day -> Feast registry -> Redis online store.

assets.py       the daily feature tables, feast/registry, feast/online with its checks
jobs.py         features_job: one day's snapshots and their materialization online
definitions.py  the domain's Definitions (merged by pipelines/definitions.py)
"""
