"""Training schedules."""

from pipelines.defs.training.jobs import training_job
from pipelines.partitions import newest_day_schedule

# The day after T, once T's late events and engagements have landed. Off until switched on.
training_schedule = newest_day_schedule(training_job, hour=6, name="training_schedule")
