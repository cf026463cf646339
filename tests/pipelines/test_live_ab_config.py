"""LOUPE_LIVE_AB: the serving config make live starts the service with (the one in use, with an
[experiment] whose treatment is LOUPE_LIVE_TREATMENT on both surfaces), and a treatment the config
refuses stopping make live before the service starts."""

from __future__ import annotations

import pytest

from data.settings import Settings
from data.typed_config import ConfigError
from pipelines.live_ab import ab_serving_config, describe, experiment_params
from serving.config import ServingConfig
from serving.model_ref import ModelRef


def test_the_live_ab_config_is_the_one_in_use_with_the_treatment_on_both_surfaces(tmp_path):
    settings = Settings.from_env({"LOUPE_HOME": str(tmp_path), "LOUPE_LIVE_AB": "1",
                                  "LOUPE_LIVE_TREATMENT": "@challenger"})
    assert settings.live_ab and settings.live_treatment == "@challenger"
    path = ab_serving_config(settings)
    assert path == tmp_path / "serving" / "live_ab.toml"
    written, shipped = ServingConfig.load(path), ServingConfig.load()
    e = written.experiment
    assert e.enabled and e.name == "live-challenger" and e.hash_salt == "live-challenger" and e.treatment_share == 0.5
    assert e.treatment.home_model == e.treatment.explore_model == ModelRef(alias="challenger")
    assert written.model_copy(update={"experiment": shipped.experiment}) == shipped  # nothing else moved
    assert experiment_params(written) == {
        "experiment": "live-challenger", "experiment_salt": "live-challenger", "treatment_share": 0.5,
        "control_home_model": "feed_ranker@champion", "control_explore_model": "explore_ranker@champion",
        "treatment_home_model": "@challenger", "treatment_explore_model": "@challenger"}
    assert "treatment 50% of viewers" in describe(written)
    assert experiment_params(shipped) == {"experiment": "none"}


def test_the_default_treatment_is_the_heuristic_and_a_bad_one_stops_make_live(tmp_path):
    settings = Settings(home=tmp_path, live_ab=True)
    assert ServingConfig.load(ab_serving_config(settings)).experiment.name == "live-heuristic"
    with pytest.raises(ConfigError, match=r"experiment\.treatment\.home_model"):
        ab_serving_config(settings.with_(live_treatment="challenger"))  # an alias needs its @
