"""The training asset group on the tiny world: training sets through Feast, both rankers per
surface logged and registered in a real MLflow (SQLite) registry, evaluation against baselines and
the oracle, the blocking promotion gate (baselines, then the champion), the champion alias, and the
simulated A/B."""

from __future__ import annotations

import json
from pathlib import Path

import dagster as dg
import mlflow
import numpy as np
import pytest

import training.train
from data import columns as c
from data import lake
from features.streaming import spec
from pipelines.defs.features.assets import feast_registry, feature_assets, realtime_rows
from pipelines.defs.training.assets import training_assets, training_examples
from pipelines.defs.training.resources import TrainingConfigResource
from pipelines.partitions import materialize_day
from pipelines.resources import build_resources
from training import tracking
from training.config import DEFAULT_PATH, TrainingConfig
from training.dataset import feature_columns, read_examples
from training.errors import TrainingDataError
from training.train import load_split


@pytest.fixture(scope="module")
def trained(tiny_lake, redis_server, tmp_path_factory):
    """Features for the first three days, examples for days 2-4, then one training run for day 4."""
    settings, summary, _ = tiny_lake
    config = tmp_path_factory.mktemp("training") / "config.toml"
    config.write_text(
        DEFAULT_PATH.read_text()
        .replace("train_days = 3 ", "train_days = 1 ")
        .replace("max_requests_per_day = 20000", "max_requests_per_day = 0")
        .replace("num_boost_round = 600", "num_boost_round = 40")
    )
    resources = {**build_resources(settings, redis_server.url.rsplit("/", 1)[0] + "/5"),
                 "training_config": TrainingConfigResource(path=str(config))}
    instance = dg.DagsterInstance.ephemeral()
    for day in summary.days[:-1]:
        assert materialize_day(feature_assets, partition_key=day, instance=instance, resources=resources).success
    assert materialize_day([feast_registry], instance=instance, resources=resources).success
    for day in summary.days:  # the first day only as the second's day before (real-time rows live a day)
        assert materialize_day([realtime_rows], partition_key=day, instance=instance, resources=resources).success
    for day in summary.days[1:]:
        assert materialize_day([training_examples], partition_key=day, instance=instance, resources=resources).success
    first = materialize_day(training_assets[1:], partition_key=summary.days[-1],
                           instance=instance, resources=resources, raise_on_error=False)
    yield settings, summary, resources, instance, first, TrainingConfig.load(config)
    instance.dispose()


def test_first_run_trains_evaluates_promotes_and_runs_the_ab(trained):
    settings, summary, _, _, result, _ = trained
    assert result.success
    checks = {c.asset_key.path[1]: c for c in result.get_asset_check_evaluations()}
    assert set(checks) == {"home", "explore"}
    assert all(c.passed for c in checks.values())
    for surface in ("home", "explore"):
        report = result.output_for_node(f"training__{surface}__evaluation")
        # the gate: no champion yet, so promoted only because both baselines were beaten by the margin
        decision, ours = report["promotion"], report["rankers"][report["challenger_kind"]]["ndcg10_realised"]
        assert decision["promoted"] and "no champion yet" in decision["reason"]
        for baseline in ("chronological", "popularity"):
            assert ours > decision[f"{baseline}_metric"] + decision["baseline_margin"]
            assert decision[f"{baseline}_metric"] == report["rankers"][baseline]["ndcg10_realised"]
        ndcg = {name: m["ndcg10"] for name, m in report["rankers"].items()}
        assert set(ndcg) >= {"lambdarank", "value_model", "chronological", "popularity", "affinity", "random", "oracle"}
        assert ndcg["oracle"] == pytest.approx(1.0)
        assert ndcg[report["challenger_kind"]] > ndcg["random"]
        assert {"new_viewers", "in_network", "celebrity_authors"} & set(report["segments"])
        assert set(report["heads"]["value_model"]) == {"like", "comment", "share", "save", "profile_visit",
                                                      "long_dwell", "negative"}
        ab = result.output_for_node(f"training__{surface}__ab_test")
        low, high = ab["engagements"]["ci95_pct"]
        assert low <= ab["engagements"]["lift_pct"] <= high
        assert ab["viewers"]["treatment"] > 0 and ab["viewers"]["control"] > 0


def test_training_sets_hold_the_real_time_features_as_of_each_impression(trained):
    """feed_ranker_v2: every example holds the real-time views' features (post, author, viewer-author)
    as of its impression, never counting an engagement from after it (a post's engagements of any
    type up to the impression bound its positive 24 h count), and the champion is trained on them."""
    settings, summary, resources, *_ = trained
    examples = read_examples(settings.lake_dir, summary.days[1:])
    views = {name.split("__")[0] for name in feature_columns(examples)}
    assert {spec.POST_VIEW, spec.AUTHOR_VIEW, spec.PAIR_VIEW} <= views
    count = f"{spec.POST_VIEW}__post_rt_engagements_24h"
    assert examples[count].notna().mean() > 0.2 and (examples[count] > 0).any()
    engagements = lake.read_partitions(settings.lake_dir, "engagements", summary.days, [c.POST_ID, c.TS])
    known = examples[examples[count].notna()].sample(300, random_state=1, replace=True)
    for row in known.itertuples():
        before = engagements[(engagements[c.POST_ID] == row.post_id) & (engagements[c.TS] <= row.ts)]
        assert getattr(row, count) <= len(before), (row.post_id, row.ts)
    client = resources["mlflow"].client()
    champion = client.get_model_version_by_alias("feed_ranker", "champion")
    features = json.loads((Path(client.download_artifacts(champion.run_id, "features.json"))).read_text())
    assert features["feature_service"] == "feed_ranker_v2" and count in features["features"]


def test_the_same_training_sets_train_either_service(trained, monkeypatch):
    """Sets built from feed_ranker_v2 hold v1's columns too: [features] service = feed_ranker_v1 trains
    on those alone; v2 on sets that lack the real-time columns is refused with what to do."""
    settings, summary, _, _, _, cfg = trained
    v2 = load_split(settings.lake_dir, "home", summary.days[-1], cfg).features
    v1 = load_split(settings.lake_dir, "home", summary.days[-1],
                    cfg.model_copy(update={"feature_service": "feed_ranker_v1"})).features
    realtime = [f for f in v2 if f.split("__")[0] in (spec.POST_VIEW, spec.AUTHOR_VIEW, spec.PAIR_VIEW)]
    assert realtime and v1 == [f for f in v2 if f not in realtime]
    built_with_v1 = lambda *args: read_examples(*args).drop(columns=realtime)  # noqa: E731
    monkeypatch.setattr(training.train, "read_examples", built_with_v1)
    with pytest.raises(TrainingDataError, match="hold no real-time feature"):
        load_split(settings.lake_dir, "home", summary.days[-1], cfg)


def test_the_ope_assets_judge_the_champion_beside_the_ab_and_log_to_mlflow(trained):
    """training/<surface>/ope on the champion's test day: no propensities in the simulator's logs
    (said, not failed); the simulated exploring log's OPE next to the very interval the ab_test
    asset reported; the whole evaluation in MLflow loupe/ope."""
    from pipelines.defs.training.ope_assets import ope_assets

    settings, summary, resources, instance, first, _ = trained
    result = materialize_day(ope_assets, partition_key=summary.days[-1], instance=instance, resources=resources)
    assert result.success
    events = {e.asset_key.path[1]: e.materialization.metadata for e in result.get_asset_materialization_events()}
    assert set(events) == {"home", "explore"}
    for surface, meta in events.items():
        ope = mlflow.artifacts.load_dict(f"runs:/{meta['mlflow_run'].value}/ope.json")
        assert "exploration share" in ope["logged"]["skipped"]
        sim = ope["simulated"]
        ab = first.output_for_node(f"training__{surface}__ab_test")
        assert sim["ab_test"]["ci95_pct"] == ab["engagements"]["ci95_pct"]
        assert set(sim["by_share"]) == {"0.05", "0.25", "1.0"}
        for block in sim["by_share"].values():
            assert set(block["estimators"]) == {"ips", "snips", "dr"}
            assert all(e["ci95_pct"][0] < e["ci95_pct"][1] for e in block["estimators"].values())
        full = sim["by_share"]["1.0"]  # every request explored: the best-conditioned estimate
        assert full["explored_requests"] == full["requests"] > 0
        run = mlflow.get_run(meta["mlflow_run"].value)
        assert run.data.tags["test_day"] == summary.days[-1]
        assert "sim.share_1.0.ips.lift_pct" in run.data.metrics


def test_mlflow_holds_runs_registry_aliases_and_a_loadable_model(trained):
    settings, summary, resources, _, _, cfg = trained
    client = resources["mlflow"].client()
    champion = client.get_model_version_by_alias("feed_ranker", "champion")
    assert client.get_model_version_by_alias("feed_ranker", "challenger").version == champion.version
    run = client.get_run(champion.run_id)
    assert run.data.params["feature_service"] == "feed_ranker_v2"
    assert run.data.params["days_test"] == summary.days[-1]
    assert {"valid_ndcg10_realised", "test_ndcg10", "baseline_oracle_ndcg10", "pct_of_oracle"} <= set(run.data.metrics)
    artifacts = {a.path for a in client.list_artifacts(champion.run_id)}
    assert {"features.json", "evaluation.json", "ndcg_vs_baselines.png", "feature_importance.png"} <= artifacts
    features = json.loads(mlflow.artifacts.load_text(f"runs:/{champion.run_id}/features.json"))
    assert features["partitions"]["valid"] == [summary.days[-2]]

    # The registered model serves through MLflow's pyfunc and equals the raw ranker.
    test = load_split(settings.lake_dir, "home", summary.days[-1], cfg).test
    model = mlflow.pyfunc.load_model("models:/feed_ranker@champion")
    ranker = tracking.load_run_ranker(champion.run_id)
    np.testing.assert_allclose(model.predict(test[ranker.feature_names]), ranker.predict(ranker.matrix(test)))
    assert model.metadata.signature is not None


def test_an_identical_challenger_does_not_take_the_champion_alias(trained):
    settings, summary, resources, instance, _, _ = trained
    client = resources["mlflow"].client()
    before = client.get_model_version_by_alias("feed_ranker", "champion").version
    # Home's train -> evaluate -> promote only (Explore and the A/B add minutes, nothing to the point)
    home = [a for a in training_assets[1:] if a.key.path[1] == "home" and a.key.path[2] != "ab_test"]
    again = materialize_day(home, partition_key=summary.days[-1],
                           instance=instance, resources=resources, raise_on_error=False)
    checks = {c.asset_key.path[1]: c for c in again.get_asset_check_evaluations()}
    assert not checks["home"].passed  # same data, same seed: equal, not better
    assert "does not beat" in checks["home"].metadata["reason"].value
    materialized = {e.asset_key.to_user_string() for e in again.get_asset_materialization_events()}
    assert "training/home/evaluation" in materialized and "training/home/champion" not in materialized
    assert client.get_model_version_by_alias("feed_ranker", "champion").version == before
    challenger = client.get_model_version_by_alias("feed_ranker", "challenger")
    assert challenger.version != before
    assert challenger.tags["promotion.promoted"] == "False"


def test_training_without_examples_fails_with_a_clear_message(trained):
    _, _, resources, instance, _, _ = trained
    result = materialize_day(training_assets[1:2], partition_key="2026-11-15", instance=instance,
                            resources=resources, raise_on_error=False)
    assert not result.success
    failure = next(e for e in result.all_events if e.event_type_value == "STEP_FAILURE")
    assert "training examples missing" in failure.event_specific_data.error.message
