"""Candidates schedules."""

from pipelines.defs.candidates.jobs import candidates_job
from pipelines.partitions import newest_day_schedule

# After the day has landed and its features are computed. Off until switched on.
candidates_schedule = newest_day_schedule(candidates_job, hour=3, name="candidates_schedule")
