"""Partitions shared by every domain: one per landing day, from the first simulated day."""

import dagster as dg

from data.columns import WORLD_START

daily_partitions = dg.DailyPartitionsDefinition(start_date=WORLD_START.isoformat(), timezone="UTC")
