"""A landed day flows through on its own (pipelines/automation.py), on the tiny world: the landing
sensor asks for its ingestion, then each tick of the automation asks for what the assets' conditions
say, and the test runs exactly that (one run per day, as the daemon launches them) until nothing is
asked. Nobody names an asset or a day after the files land."""

from __future__ import annotations

import shutil
from collections import defaultdict

import dagster as dg
import pytest

from data.settings import Settings
from pipelines.automation import AUTOMATION_SENSOR
from pipelines.definitions import build_definitions
from pipelines.defs.training.resources import TrainingConfigResource
from pipelines.resources import build_resources
from training import tracking
from training.config import DEFAULT_PATH, SURFACE_MODELS

MAX_TICKS = 60  # a chain that never settles fails the test instead of looping


class Daemon:
    """The two triggers a Dagster daemon would tick (the landing sensor, the automation sensor),
    ticked by hand: every run they ask for is executed in process, in the order asked."""

    def __init__(self, defs: dg.Definitions, instance: dg.DagsterInstance):
        self.defs, self.instance = defs, instance
        self.landing_cursor: str | None = None
        self.automation_cursor = None
        self.runs: list[tuple[str | None, frozenset[str], bool]] = []  # (day, asset keys, success)
        self.failures: list[str] = []

    def landing_tick(self) -> list[str]:
        """The landing sensor's tick: new days registered, their ingest runs executed."""
        sensor = self.defs.resolve_sensor_def("landing_sensor")
        with dg.build_sensor_context(cursor=self.landing_cursor, instance=self.instance,
                                     instance_ref=self.instance.get_ref(), definitions=self.defs,
                                     resources={"workspace": self.defs.resources["workspace"]}) as context:
            data = sensor.evaluate_tick(context)
        for request in data.dynamic_partitions_requests or []:
            self.instance.add_dynamic_partitions(request.partitions_def_name, list(request.partition_keys))
        self.landing_cursor = data.cursor
        job = self.defs.resolve_job_def("ingest_job")
        for request in data.run_requests:
            result = job.execute_in_process(partition_key=request.partition_key, instance=self.instance)
            self.runs.append((request.partition_key, frozenset({"ingest"}), result.success))
        return [r.partition_key for r in data.run_requests]

    def settle(self) -> list[tuple[str | None, frozenset[str], bool]]:
        """Automation ticks until one asks for nothing; returns the runs they asked for."""
        job = self.defs.resolve_implicit_global_asset_job_def()
        start = len(self.runs)
        for _ in range(MAX_TICKS):
            result = dg.evaluate_automation_conditions(defs=self.defs, instance=self.instance,
                                                       cursor=self.automation_cursor)
            self.automation_cursor = result.cursor
            asked: dict[str | None, set[dg.AssetKey | dg.AssetCheckKey]] = defaultdict(set)
            for evaluation in result.results:
                subset = evaluation.true_subset
                if subset.is_empty:
                    continue
                for day in (subset.expensively_compute_partition_keys() if subset.is_partitioned else [None]):
                    asked[day].add(evaluation.key)
            if not asked:
                return self.runs[start:]
            for day, keys in sorted(asked.items(), key=lambda item: item[0] or ""):
                assets = {k for k in keys if isinstance(k, dg.AssetKey)}
                # as the daemon's run: the checks asked for, and those its assets' own steps compute
                checks = {k for k in keys if isinstance(k, dg.AssetCheckKey)} | {
                    check for key in assets for check in self.defs.resolve_assets_def(key).check_keys
                    if check.asset_key in assets}
                run = job.get_subset(asset_selection=assets, asset_check_selection=checks).execute_in_process(
                    partition_key=day, instance=self.instance, raise_on_error=False)
                self.runs.append((day, frozenset(k.to_user_string() for k in assets), run.success))
                self.failures += [f"{day} {e.step_key}: {e.event_specific_data.error.message.strip()}"
                                  for e in run.all_events if e.event_type_value == "STEP_FAILURE"]
        raise AssertionError(f"the automation still asked for runs after {MAX_TICKS} ticks: {self.runs[-5:]}")


def land(source: Settings, target: Settings, days: list[str]) -> None:
    """Copy the days' landing files, as an exporter drops them."""
    for log_dir in (source.landing_dir).iterdir():
        for day in days:
            if (log_dir / day).is_dir():
                shutil.copytree(log_dir / day, target.landing_dir / log_dir.name / day)


def ran(runs, asset: str) -> list[str | None]:
    return [day for day, keys, _ in runs if asset in keys]


@pytest.fixture(scope="module")
def flow(tiny_lake, redis_server, tmp_path_factory):
    source, summary, _ = tiny_lake
    days = summary.days
    home = tmp_path_factory.mktemp("automation") / "loupe"
    settings = Settings(home=home, world="tiny")
    shutil.copytree(source.world_dir, settings.world_dir, ignore=shutil.ignore_patterns("landing"))
    config = home / "training.toml"
    config.write_text(DEFAULT_PATH.read_text()
                      .replace("train_days = 3 ", "train_days = 1 ")
                      .replace("max_requests_per_day = 20000", "max_requests_per_day = 0")
                      .replace("num_boost_round = 600", "num_boost_round = 40"))
    redis_url = redis_server.url.rsplit("/", 1)[0] + "/9"
    import redis

    redis.Redis.from_url(redis_url).flushdb()
    resources = {**build_resources(settings, redis_url), "training_config": TrainingConfigResource(path=str(config))}
    defs = build_definitions(resources)
    with dg.instance_for_test() as instance:
        daemon = Daemon(defs, instance)
        # the daemon runs before anything lands: it applies the Feast registry, and waits
        assert [(day, keys) for day, keys, _ in daemon.settle()] == [(None, {"feast/registry"})]
        land(source, settings, days[:3])
        first = (daemon.landing_tick(), daemon.settle())
        land(source, settings, days[3:])
        second = (daemon.landing_tick(), daemon.settle())
        yield settings, days, daemon, first, second
    redis.Redis.from_url(redis_url).flushdb()


def test_landed_days_are_backfilled_in_day_order_and_only_the_newest_is_served(flow):
    _, days, daemon, (ingested, runs), _ = flow
    assert ingested == days[:3]
    assert all(ok for _, _, ok in runs), daemon.failures
    for asset in ("features/viewer_author", "features/realtime", "candidates/fanout"):
        assert ran(runs, asset) == days[:3], (asset, runs)  # each day once, the day before first
    for asset in ("feast/online", "feast/realtime_online", "candidates/trending", "candidates/social",
                  "candidates/fatigue", "candidates/integrity", "candidates/embeddings"):
        assert ran(runs, asset) == [days[2]], asset
    # training sets of the window (not the first day: no snapshot before it); no rankers: the newest
    # day's split trains on the first day, which has none
    assert sorted(ran(runs, "training/examples")) == days[1:3]
    assert ran(runs, "training/home/rankers") == []


def test_a_new_day_runs_through_to_the_champion_decision(flow):
    settings, days, daemon, _, (ingested, runs) = flow
    assert ingested == [days[3]]
    assert {day for day, _, _ in runs} == {days[3]}  # the new day only; nothing older ran again
    assert all(ok for _, _, ok in runs), daemon.failures
    chain = set().union(*(keys for _, keys, _ in runs))
    assert chain >= {"features/viewer_author", "features/realtime", "feast/online", "feast/realtime_online",
                     "candidates/fanout", "candidates/trending", "candidates/social", "candidates/fatigue",
                     "candidates/integrity", "candidates/embeddings", "training/examples"}
    client = tracking.connect(settings.tracking_uri, str(settings.mlflow_artifact_root))
    for surface, model_name in SURFACE_MODELS.items():
        assert {f"training/{surface}/{a}" for a in ("rankers", "evaluation")} <= chain
        gate = daemon.instance.get_latest_asset_check_evaluation_record(
            dg.AssetCheckKey(dg.AssetKey(["training", surface, "evaluation"]), "challenger_beats_champion"))
        evaluation = gate.event.get_dagster_event().event_specific_data  # the latest: day 4's
        champion = daemon.instance.fetch_materializations(
            dg.AssetRecordsFilter(asset_key=dg.AssetKey(["training", surface, "champion"]),
                                  asset_partitions=[days[3]]), limit=1).records
        # the decision is recorded, and followed: promoted <=> champion moved (and only then the A/B)
        assert bool(champion) == evaluation.passed
        alias = tracking.load_ranker(client, model_name, tracking.CHAMPION)
        assert (alias is not None) == evaluation.passed
        assert (f"training/{surface}/ab_test" in chain) == evaluation.passed


def test_a_sensor_started_after_the_days_were_ingested_asks_for_none(flow):
    _, _, daemon, _, _ = flow
    restarted = Daemon(daemon.defs, daemon.instance)  # no cursor: as after `make run`, or a reset
    assert restarted.landing_tick() == []
    assert daemon.defs.resolve_sensor_def(AUTOMATION_SENSOR).default_status == dg.DefaultSensorStatus.RUNNING
