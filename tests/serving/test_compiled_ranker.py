"""Compiled rankers score exactly as LightGBM does (max abs diff ≤ 1e-6), value model and
LambdaRank alike, on random inputs with missing values; the compiled libraries are reused."""

from __future__ import annotations

import lightgbm as lgb
import numpy as np
import pytest

from serving.compiled_ranker import CompiledRanker
from training.models import LAMBDARANK, VALUE_MODEL, Ranker

N_FEATURES = 12


def random_inputs(rng, n: int) -> np.ndarray:
    x = rng.normal(size=(n, N_FEATURES)).astype(np.float32)
    x[rng.random(x.shape) < 0.15] = np.nan  # missing features are common at serving time
    return x


def booster(rng, objective: str) -> lgb.Booster:
    x = random_inputs(rng, 3000)
    signal = np.nan_to_num(x[:, 0]) - np.nan_to_num(x[:, 3]) + rng.normal(size=len(x))
    params = {"objective": objective, "num_leaves": 31, "verbose": -1, "num_threads": 1, "seed": 1}
    if objective == "lambdarank":
        data = lgb.Dataset(x, np.digitize(signal, [-1, 0, 1]), group=[30] * 100)
    else:
        data = lgb.Dataset(x, (signal > 0).astype(int))
    return lgb.train(params, data, num_boost_round=40)


@pytest.fixture(scope="module")
def rankers():
    rng = np.random.default_rng(7)
    names = [f"f{i}" for i in range(N_FEATURES)]
    value = Ranker(VALUE_MODEL, names, {"like": booster(rng, "binary"), "hide": booster(rng, "binary")},
                   weights={"like": 1.0, "hide": -3.0})
    rank = Ranker(LAMBDARANK, names, {LAMBDARANK: booster(rng, "lambdarank")})
    return value, rank


def test_compiled_scores_match_lightgbm(rankers, tmp_path):
    rng = np.random.default_rng(11)
    for ranker in rankers:
        compiled = CompiledRanker.compile(ranker, tmp_path)
        for _ in range(3):
            x = random_inputs(rng, 1000)
            assert np.max(np.abs(compiled.predict(x) - ranker.predict(x))) <= 1e-6
        if ranker.kind == VALUE_MODEL:
            heads, ref = compiled.predict_heads(x), ranker.predict_heads(x)
            assert heads.keys() == ref.keys()
            assert all(np.max(np.abs(heads[h] - ref[h])) <= 1e-6 for h in heads)


def test_compiled_libraries_are_cached_by_model(rankers, tmp_path):
    value, _ = rankers
    first = CompiledRanker.compile(value, tmp_path)
    libs = sorted(p.name for p in (tmp_path / first.model_hash).iterdir())
    assert libs == ["hide.so", "like.so"]
    mtimes = [p.stat().st_mtime_ns for p in (tmp_path / first.model_hash).iterdir()]
    again = CompiledRanker.compile(value, tmp_path)
    assert again.model_hash == first.model_hash
    assert [p.stat().st_mtime_ns for p in (tmp_path / first.model_hash).iterdir()] == mtimes


def test_a_model_another_process_is_compiling_is_waited_for_not_compiled_again(rankers, tmp_path, monkeypatch):
    """The service's workers start together: the one that does not hold a model's lock waits, then
    loads the libraries the holder built (compile_booster finds each there and runs no gcc)."""
    import threading

    from filelock import FileLock

    from serving import compiled_ranker
    from serving.compiled_ranker import model_hash

    calls: list[tuple[str, bool]] = []  # (thread, the library existed when asked for)
    build = compiled_ranker.compile_booster

    def recording(booster, libpath):
        calls.append((threading.current_thread().name, libpath.exists()))
        return build(booster, libpath)

    monkeypatch.setattr(compiled_ranker, "compile_booster", recording)
    value, _ = rankers
    key = model_hash(value)
    with FileLock(tmp_path / f"{key}.lock"):  # the other worker, compiling
        waiter = threading.Thread(target=lambda: calls.append(("model", CompiledRanker.compile(value, tmp_path))),
                                  name="waiter")
        waiter.start()
        for name, booster in value.boosters.items():
            compiled_ranker.compile_booster(booster, tmp_path / key / f"{name}.so")
    waiter.join()
    waited = [existed for thread, existed in calls if thread == "waiter"]
    assert waited and all(waited), calls
    (model,) = [m for thread, m in calls if thread == "model"]
    x = random_inputs(np.random.default_rng(3), 100)
    assert np.max(np.abs(model.predict(x) - value.predict(x))) <= 1e-6
