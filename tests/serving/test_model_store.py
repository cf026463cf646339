"""The champion store against a real MLflow registry (SQLite): nothing registered → the heuristic;
a champion → served at once with LightGBM, then compiled (same scores, ≤ 1e-6, cascade stage too);
a new champion → swapped; a version that fails to load, or a registry that fails, never replaces the
model being served; an alias taken away → back to the heuristic."""

from __future__ import annotations

import numpy as np
import pytest

from serving.config import ServingConfig
from tests.serving.helpers import model_store, random_ranker, register_champion
from training import tracking
from training.models import LAMBDARANK

NAMES = [f"f{i}" for i in range(8)]


@pytest.fixture
def registry(tmp_path):
    return f"sqlite:///{tmp_path / 'mlflow.db'}", tmp_path / "artifacts"


def rows(n=500, seed=3):
    x = np.random.default_rng(seed).normal(size=(n, len(NAMES))).astype(np.float32)
    x[np.random.default_rng(seed + 1).random(x.shape) < 0.15] = np.nan
    return x


def test_champion_lifecycle(registry, tmp_path):
    uri, artifacts = registry
    cfg = ServingConfig.load()
    faults: dict[str, Exception] = {}
    store = model_store(uri, artifacts, cfg, tmp_path / "compiled", faults)
    store.refresh()
    assert store.current("home") is None and store.ready()  # resolved: nothing to serve but the heuristic

    v1 = random_ranker(NAMES, seed=1)
    register_champion(uri, artifacts, "home", "feed_ranker", v1)
    store.refresh()
    home = store.current("home")
    assert home.label == "feed_ranker:1" and home.engine == "compiled" and store.ready()
    x = rows()
    assert np.max(np.abs(home.full(x) - v1.predict(x))) <= 1e-6  # compiled == LightGBM's predict
    prefix = np.sum([v1.weights[h] * b.predict(x, num_iteration=cfg.cascade.first_stage_trees)
                     for h, b in v1.boosters.items()], axis=0)
    assert np.max(np.abs(home.first_stage(x) - prefix)) <= 1e-6  # and so is the cascade's first stage

    v2 = random_ranker(NAMES, LAMBDARANK, seed=2)
    register_champion(uri, artifacts, "home", "feed_ranker", v2)
    store.refresh()
    assert store.current("home").label == "feed_ranker:2"
    assert np.max(np.abs(store.current("home").full(x) - v2.predict(x))) <= 1e-6

    # a champion that cannot be loaded leaves v2 serving
    faults["load"] = OSError("artifact store down")
    register_champion(uri, artifacts, "home", "feed_ranker", random_ranker(NAMES, seed=3))
    store.refresh()
    assert store.current("home").label == "feed_ranker:2" and store.status()["home"]["errors"] == 1
    del faults["load"]
    store.refresh()
    assert store.current("home").label == "feed_ranker:3"

    # a registry that fails keeps the model; one that says "no champion" means the heuristic
    faults["lookup"] = ConnectionError("registry down")
    store.refresh()
    assert store.current("home").label == "feed_ranker:3"
    del faults["lookup"]
    tracking.connect(uri).delete_registered_model_alias("feed_ranker", "champion")
    store.refresh()
    assert store.current("home") is None


def test_lightgbm_engine_serves_without_compiling(registry, tmp_path):
    uri, artifacts = registry
    cfg = ServingConfig.load().with_("model", engine="lightgbm")
    ranker = random_ranker(NAMES)
    register_champion(uri, artifacts, "explore", "explore_ranker", ranker)
    store = model_store(uri, artifacts, cfg, tmp_path / "compiled")
    store.refresh()
    model = store.current("explore")
    assert model.engine == "lightgbm" and store.ready()
    assert not list((tmp_path / "compiled").rglob("*.so"))  # nothing compiled (the kept champion's files only)
    np.testing.assert_allclose(model.full(rows()), ranker.predict(rows()), atol=1e-12)
