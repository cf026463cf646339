"""The training assets on a team's kind of data, through Dagster and a real MLflow (SQLite) registry:
click-only labels under the shipped vocabulary, no Explore impressions, no simulator truth.

Training sets are written straight into the lake (the Feast retrieval that normally builds them is
tested in test_training_pipeline.py); everything from `training/<surface>/rankers` on is the real
asset code. Two teams: one whose clicks follow a feature the model sees (it beats chronological
order and popularity and becomes the first champion), one whose clicks follow recency alone, which
no feature carries (its challenger is worse than chronological and, with no champion, nothing is
promoted: the service keeps its heuristic and says `no_champion`)."""

from __future__ import annotations

import dagster as dg
import pytest

from candidate_gen.block import CandidateBlock
from candidate_gen.records import Candidate
from data import columns as c
from pipelines.defs.training.assets import surface_outcomes, training_assets
from pipelines.defs.training.resources import MlflowResource, TrainingConfigResource
from pipelines.partitions import materialize_day
from pipelines.resources import WorkspaceResource
from serving.arm_models import ArmModels
from serving.config import ServingConfig
from serving.heuristic import HeuristicScorer
from serving.model_store import NO_CHAMPION, ModelStore, registry_loader, registry_lookup
from serving.pipeline import Deadline, FeedQuery, FeedState
from serving.stages.model_scorer import ModelScorer
from tests.training.examples import SHIPPED, examples
from training import tracking
from training.config import DEFAULT_PATH
from training.dataset import write_examples

pytestmark = pytest.mark.integration  # Dagster runs of the training assets
DAYS = ["2026-10-09", "2026-10-10", "2026-10-11"]  # train, validation, test


def team(tmp_path, recency_clicks: bool):
    """A lake of Home-only, click-only training sets, and the resources of a team's workspace."""
    lake = tmp_path / "lake"
    for day in DAYS:
        frame = examples(day, "home", SHIPPED, n_requests=300, positives={"click": 1.0})
        if recency_clicks:  # the newest posts are clicked; no feature says which are newest
            newest = frame.groupby(c.REQUEST_ID)[c.CREATED_AT].rank(ascending=False) <= 2
            frame["y_click"] = newest.astype("int8")
            frame["value"] = frame["y_click"].astype(float)
            frame["grade"] = frame["y_click"].astype("int32")
        write_examples(frame, lake, day)
    config = tmp_path / "training.toml"
    config.write_text(DEFAULT_PATH.read_text().replace("train_days = 3 ", "train_days = 1 ")
                      .replace("num_boost_round = 600", "num_boost_round = 40")
                      .replace('service = "feed_ranker_v2"', 'service = "feed_ranker_v1"'))  # hand-made sets
    return {
        "workspace": WorkspaceResource(landing_dir=str(tmp_path / "landing"), lake_dir=str(lake)),
        "training_config": TrainingConfigResource(path=str(config)),
        "mlflow": MlflowResource(tracking_uri=f"sqlite:///{tmp_path / 'mlflow.db'}",
                                 artifact_root=str(tmp_path / "mlartifacts")),
    }


def train(resources) -> dg.ExecuteInProcessResult:
    return materialize_day(training_assets[1:], partition_key=DAYS[-1], resources=resources, raise_on_error=False)


def test_click_only_home_trains_and_is_promoted_while_the_empty_explore_is_skipped(tmp_path):
    resources = team(tmp_path, recency_clicks=False)
    result = train(resources)
    assert result.success  # a skipped surface keeps the run green

    # Explore: skipped before training, with the reason on the asset; nothing downstream ran
    outcomes = surface_outcomes(result)
    assert outcomes["explore"]["skipped"].startswith("explore: no explore impressions on any of these days")
    for step in ("evaluation", "champion", "ab_test"):
        assert result.is_node_skipped(f"training__explore__{step}")
    materialized = {e.asset_key.to_user_string() for e in result.get_asset_materialization_events()}
    assert not any(key.startswith("training/explore") for key in materialized)

    # Home: a value model of the one head with positives, and a LambdaRank
    home = outcomes["home"]
    evaluation, decision = home["evaluation"], home["decision"]
    assert set(evaluation["heads"]["value_model"]) == {"click"}
    assert "oracle" not in evaluation["rankers"] and "pct_of_oracle" not in evaluation  # no truth
    assert decision["promoted"] and "no champion yet" in decision["reason"]
    ours = evaluation["rankers"][evaluation["challenger_kind"]]["ndcg10_realised"]
    for baseline in ("chronological", "popularity"):
        assert decision[f"{baseline}_metric"] == evaluation["rankers"][baseline]["ndcg10_realised"] < ours - 0.005
        assert f"{baseline} {decision[f'{baseline}_metric']:.5f}" in decision["reason"]
    assert home["ab_test"]["skipped"].startswith("no simulator truth")

    client = resources["mlflow"].client()
    champion = client.get_model_version_by_alias("feed_ranker", "champion")
    assert str(champion.version) == evaluation["challenger_version"]
    run_ids = result.output_for_node("training__home__rankers")["run_ids"]
    runs = {k: client.get_run(r) for k, r in run_ids.items()}
    value_run = runs["value_model"].data
    assert value_run.params["value_model.heads"] == "click" and value_run.params["value_model.w_click"] == "1.0"
    dropped = value_run.tags["heads_dropped"]
    assert all(h in dropped for h in ("like", "negative", "long_dwell")) and "no positives" in dropped
    assert "baseline_chronological_ndcg10_realised" in runs[evaluation["challenger_kind"]].data.metrics
    assert tracking.load_run_ranker(run_ids["value_model"]).weights == {"click": 1.0}  # what serving sums over


def test_a_challenger_worse_than_chronological_is_never_champion_and_the_service_says_so(tmp_path):
    resources = team(tmp_path, recency_clicks=True)
    result = train(resources)
    check = next(c for c in result.get_asset_check_evaluations() if c.asset_key.path[1] == "home")
    assert not check.passed  # the gate refused: the blocking check fails its step on purpose
    reason = check.metadata["reason"].value
    decision = surface_outcomes(result)["home"]["decision"]
    assert not decision["promoted"] and decision["champion_version"] is None
    assert "does not beat chronological" in reason
    assert f"chronological {decision['chronological_metric']:.5f}" in reason
    assert f"popularity {decision['popularity_metric']:.5f}" in reason
    assert not result.is_node_success("training__home__champion")

    # Nothing promoted and no champion: the ranking service keeps its heuristic and says why
    client = resources["mlflow"].client()
    assert tracking.version_by_alias(client, "feed_ranker", tracking.CHAMPION) is None
    cfg = ServingConfig.load()
    store = ModelStore(registry_lookup(client), registry_loader(client), cfg.model,
                       cfg.cascade, tmp_path / "compiled")
    store.refresh()
    state = FeedState(candidates=CandidateBlock.of(Candidate(i + 1, 7, 1_000_000 - i, "in_network") for i in range(4)))
    ModelScorer(ArmModels(store), HeuristicScorer(cfg.heuristic), cfg.cascade, cfg.budget).run(
        FeedQuery("r", "home", 1, 4, 1_000_000, Deadline(50)), state)
    assert (state.model_version, state.heuristic_reason) == ("heuristic", NO_CHAMPION)
    assert state.degraded == {}  # declared, not degraded
