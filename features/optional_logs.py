"""Logs an export may not have at all: a graph-only export has accounts, follows and posts, and no
engagement, impression, block, story or moderation-label log. Such a log, absent from the whole
lake, reads as empty in the feature jobs and the Explore builders; a log the lake holds on other
days but not on the day asked is still a missing input (that day's ingest has not run). No Spark
here: the read path imports it.
"""

from __future__ import annotations

from pathlib import Path

from data import lake

OPTIONAL_LOGS = ("engagements", "impressions", "blocks", "stories", "post_labels")


def absent(lake_dir: Path, log: str) -> bool:
    """An optional log of which the lake holds no partition at all: the export does not have it."""
    return log in OPTIONAL_LOGS and not lake.partition_days(lake_dir, log)
