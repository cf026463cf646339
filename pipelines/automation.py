"""What runs when a day lands: Dagster declarative automation over the day partitions.

The landing sensor (defs/ingest/sensors.py) ingests a day when its files land or change. From
there each asset's automation condition decides, at every tick of `loupe_automation`, which of its
days to run, so a landed day flows through ingest -> features -> online store -> candidates ->
training sets -> rankers -> evaluation -> promotion -> A/B with no one starting it. The Dagster UI
shows each condition and why it was or was not true (Automation tab of an asset).

The Feast registry is applied once, before any day needs it. Every other condition starts from
`updated`: Dagster's `eager` (a day whose inputs updated, none missing or running), not set off by a
new registry (it is not per day: re-applying definitions must not re-run every day), and never after
a failed blocking check upstream. Then one of:

- every day, in day order: feature snapshots, real-time rows, the fan-out run. A day's features
  read every earlier day's events, and the fan-out worker applies days in order, so a day waits for
  the day before to be done (a backfill of many landed days runs one day after the other).
- the newest day only: what serves now (the online store, Explore sources, the champion). A day
  that lands late, or a backfill's older days, leaves them alone.
- training sets of the days the newest test day's split reads (training/train.py split_days); its
  rankers once that split can be read.

Days are dynamic partitions taken from the data, not a calendar, so "newest" and "the day before"
are the registered days' order. These conditions are Python of Loupe's own: the sensor evaluates
them in the code server (`use_user_code_server`), as Dagster requires for custom conditions.
"""

from __future__ import annotations

from dataclasses import dataclass

import dagster as dg

from features.snapshots import SNAPSHOT_TABLES
from pipelines.defs.candidates.assets import FANOUT_KEY
from pipelines.defs.features.assets import (
    ONLINE_KEY,
    REALTIME_KEY,
    REALTIME_ONLINE_KEY,
    REGISTRY_KEY,
    feature_key,
)
from pipelines.defs.training.assets import EXAMPLES_KEY
from training.config import SURFACE_MODELS
from training.train import split_days

AC = dg.AutomationCondition
AUTOMATION_SENSOR = "loupe_automation"


def _registered(context: dg.AutomationContext) -> list[str]:
    """Every registered day of the evaluated asset, in date order."""
    return sorted(context.asset_graph_view.get_full_subset(key=context.key).expensively_compute_partition_keys())


def _among(context: dg.AutomationContext, days) -> dg.AutomationResult:
    return dg.AutomationResult(context, context.candidate_subset.compute_intersection_with_partition_keys(set(days)))


class _Stateless(AC):
    """A condition computed afresh at every tick from the instance (no cursor of its own)."""

    @property
    def requires_cursor(self) -> bool:
        return False


@dataclass(frozen=True)
class NewestDays(_Stateless):
    """The `count` newest registered days; `after_first`: not the first day (it has no day before
    whose snapshot a training set could read)."""

    count: int
    after_first: bool = False

    @property
    def name(self) -> str:
        return f"newest_days({self.count}{', after_first' if self.after_first else ''})"

    def evaluate(self, context: dg.AutomationContext) -> dg.AutomationResult:
        days = _registered(context)
        return _among(context, (days[1:] if self.after_first else days)[-self.count:])


@dataclass(frozen=True)
class AfterDayBefore(_Stateless):
    """The registered day before is materialized for this asset (or there is none)."""

    @property
    def name(self) -> str:
        return "after_day_before"

    async def evaluate(self, context: dg.AutomationContext) -> dg.AutomationResult:
        days = _registered(context)
        done = (await context.asset_graph_view.compute_materialized_asset_subset(context.key)
                ).expensively_compute_partition_keys()
        return _among(context, [day for i, day in enumerate(days) if i == 0 or days[i - 1] in done])


@dataclass(frozen=True)
class TrainingSetsReady(_Stateless):
    """Test day T's split can be read (training/train.py): its validation and test days and at
    least one training day have training sets, as has every other landed day it reads (the first
    day never has one: no snapshot before it)."""

    train_days: int

    @property
    def name(self) -> str:
        return f"training_sets_ready(train_days={self.train_days})"

    async def evaluate(self, context: dg.AutomationContext) -> dg.AutomationResult:
        later = set(_registered(context)[1:])
        built = (await context.asset_graph_view.compute_materialized_asset_subset(EXAMPLES_KEY)
                 ).expensively_compute_partition_keys()

        def ready(day: str) -> bool:
            split = split_days(day, self.train_days)
            return (all(d in built for d in (*split["valid"], *split["test"]))
                    and any(d in built for d in split["train"])
                    and all(d in built for d in split["train"] if d in later))

        return _among(context, [d for d in context.candidate_subset.expensively_compute_partition_keys() if ready(d)])


def updated() -> AC:
    """Dagster's eager, with the registry's updates ignored and upstream blocking checks passed."""
    return AC.eager().replace(
        "any_deps_updated", AC.any_deps_updated().ignore(dg.AssetSelection.assets(REGISTRY_KEY)),
    ) & AC.all_deps_blocking_checks_passed()


def conditions(train_days: int) -> dict[dg.AssetKey, AC]:
    """The condition of each automated asset. Ingestion has none (the landing sensor runs it), nor
    has the candidate rebuild (a repair, run by hand)."""
    every_day = (updated() & AfterDayBefore()).with_label("every day, in day order")
    newest = (updated() & NewestDays(1)).with_label("the newest day")
    training_sets = (updated() & NewestDays(train_days + 2, after_first=True)).with_label(
        "the newest test day's training window")
    rankers = (newest & TrainingSetsReady(train_days)).with_label("the newest day, its training sets built")
    by_key = {
        # `feast apply` once, before any day needs it (eager would wait for it to become missing)
        REGISTRY_KEY: (AC.missing() & ~AC.in_progress() & ~AC.execution_failed()).with_label("until applied"),
        REALTIME_KEY: every_day,
        FANOUT_KEY: every_day,
        ONLINE_KEY: newest,
        REALTIME_ONLINE_KEY: newest,
        EXAMPLES_KEY: training_sets,
        **{feature_key(table): every_day for table in SNAPSHOT_TABLES},
        **{dg.AssetKey(["candidates", name]): newest for name in ("trending", "social", "fatigue", "integrity",
                                                              "embeddings", "search_index", "stories")},
    }
    for surface in SURFACE_MODELS:
        by_key[dg.AssetKey(["training", surface, "rankers"])] = rankers
        for name in ("evaluation", "champion", "ab_test", "ope"):
            by_key[dg.AssetKey(["training", surface, name])] = newest
    return by_key


def automate(defs: dg.Definitions, train_days: int) -> dg.Definitions:
    """`defs` with each asset's condition and the sensor that evaluates them."""
    by_key = conditions(train_days)

    def with_condition(spec: dg.AssetSpec) -> dg.AssetSpec:
        return spec.replace_attributes(automation_condition=by_key.get(spec.key))

    sensor = dg.AutomationConditionSensorDefinition(
        AUTOMATION_SENSOR, target=dg.AssetSelection.all() | dg.AssetSelection.all_asset_checks(),
        use_user_code_server=True,
        default_status=dg.DefaultSensorStatus.RUNNING, minimum_interval_seconds=30,
        description="Runs what a landed day needs, asset by asset, by each one's automation condition "
        "(pipelines/automation.py).")
    return dg.Definitions.merge(defs.map_asset_specs(func=with_condition), dg.Definitions(sensors=[sensor]))

