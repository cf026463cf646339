"""The features asset group materialized on the tiny world: snapshots, Feast apply, online store,
and the checks beside them pass; a day without its lake inputs fails naming them."""

from __future__ import annotations

import dagster as dg
import pytest

from features.tables import AUTHOR
from pipelines.defs.features.assets import feast_online, feast_registry, feature_assets, feature_key
from pipelines.partitions import materialize_day
from pipelines.resources import build_resources


@pytest.fixture(scope="module")
def resources(tiny_lake, redis_server):
    settings, _, _ = tiny_lake
    return build_resources(settings, redis_server.url.rsplit("/", 1)[0] + "/4")


def test_features_then_feast_online_with_checks(tiny_lake, resources):
    settings, summary, _ = tiny_lake
    last = summary.days[-1]
    with dg.DagsterInstance.ephemeral() as instance:
        for day in summary.days[-2:]:
            result = materialize_day(feature_assets, partition_key=day, instance=instance, resources=resources)
            assert result.success
        rows = {e.asset_key.path[-1]: e.materialization.metadata["dagster/row_count"].value
                for e in result.get_asset_materialization_events()}
        assert rows["viewer"] == summary.users == rows["author"]
        assert rows["viewer_author"] > rows["viewer"] and rows["post"] > 0
        assert rows["post_tags"] == rows["post"]  # the same posts, their hashtag vectors
        assert 0 < rows["viewer_tags"] <= rows["viewer"]  # viewers with positive engagements only

        assert materialize_day([feast_registry], instance=instance, resources=resources).success
        online = materialize_day([feast_online], partition_key=last, instance=instance, resources=resources)
        checks = {c.check_name: c for c in online.get_asset_check_evaluations()}
        assert checks["online_matches_offline"].passed, checks["online_matches_offline"].metadata
        assert checks["online_matches_offline"].metadata["cells_compared"].value > 1000
        assert checks["online_is_fresh"].passed

        # An older day after a newer one is reported superseded, never written over it.
        older = materialize_day([feast_online], partition_key=summary.days[-2], instance=instance,
                               resources=resources)
        meta = older.get_asset_materialization_events()[0].materialization.metadata
        assert meta["skipped"].value is True


def test_a_day_without_lake_inputs_fails_naming_them(resources):
    with dg.DagsterInstance.ephemeral() as instance:
        result = materialize_day(feature_assets, partition_key="2026-11-01", instance=instance,
                                 selection=[feature_key(AUTHOR)], resources=resources, raise_on_error=False)
    assert not result.success
    failure = next(e for e in result.all_events if e.event_type_value == "STEP_FAILURE")
    assert "lake/users/dt=2026-11-01" in str(failure.event_specific_data.error)
