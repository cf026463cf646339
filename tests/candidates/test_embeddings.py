"""Viewer/author embeddings: communities found, save/load round trip, reproducibility."""

from __future__ import annotations

import threading

import numpy as np
import pandas as pd
import pytest

from candidate_gen.explore import embeddings as emb
from candidate_gen.explore.configs import EMBEDDING_WEIGHTS, EmbeddingConfig

DAY = "2026-10-13"
COMMUNITIES = {"a": (range(1, 31), range(101, 111)), "b": (range(31, 61), range(201, 211))}


def two_communities(seed: int = 0) -> pd.DataFrame:
    """Viewers 1-30 engage only with authors 101-110, viewers 31-60 only with 201-210; each viewer
    with a random half of its community's authors (likes and long dwells), plus short dwells and a
    hide that must not count as much."""
    rng = np.random.default_rng(seed)
    rows = []
    for viewers, authors in COMMUNITIES.values():
        for v in viewers:
            for a in rng.choice(list(authors), 5, replace=False):
                rows.append((v, a, "like", None))
                rows.append((v, a, "dwell", 15_000.0))
                rows.append((v, a, "dwell", 3_000.0))
    rows.append((1, 105, "hide", None))
    frame = pd.DataFrame(rows, columns=["viewer_id", "author_id", "type", "value"])
    frame["ts"] = pd.Timestamp(f"{DAY}T12:00:00Z")
    return frame


@pytest.fixture(scope="module")
def conf() -> EmbeddingConfig:
    # Two communities need two dimensions; more would memorise this 60-viewer world.
    return EmbeddingConfig(factors=2, min_author_viewers=1)


@pytest.fixture(scope="module")
def model(conf) -> emb.EmbeddingModel:
    return emb.fit_embeddings(two_communities(), DAY, conf)


def test_nearest_authors_come_from_the_viewers_own_community(model):
    for viewers, authors in COMMUNITIES.values():
        for v in viewers:
            ids, sims = model.nearest_authors(model.viewer_vector(v), 5)
            assert set(ids.tolist()) <= set(authors), v
            assert np.all(np.diff(sims) <= 0)  # best first


def test_authors_a_viewer_never_engaged_with_rank_by_community(model):
    frame = two_communities()
    for viewers, authors in COMMUNITIES.values():
        for v in viewers:
            engaged = set(frame.loc[frame.viewer_id == v, "author_id"])
            ids, _ = model.nearest_authors(model.viewer_vector(v), 5, exclude=engaged)
            assert set(ids.tolist()) == set(authors) - engaged, v


def test_excluded_authors_are_skipped_and_k_still_returned(model):
    ids, _ = model.nearest_authors(model.viewer_vector(1), 5, exclude={101, 102, 103})
    assert len(ids) == 5 and not {101, 102, 103} & set(ids.tolist())


def test_a_request_thread_searches_with_one_openmp_thread(model):
    """OpenMP's thread count is per thread, and a fresh thread (a request's) starts at every core:
    a one-query search there spun every core (5.3 ms of CPU a query on the medium world, not 0.4)."""
    import faiss

    seen = {}
    search = model.index.search

    def recording(*args, **kwargs):
        seen["threads"] = faiss.omp_get_max_threads()
        return search(*args, **kwargs)

    def request():
        seen["default"] = faiss.omp_get_max_threads()
        model.nearest_authors(model.viewer_vector(1), 5)
        seen["after"] = faiss.omp_get_max_threads()

    model.index.search = recording
    try:
        thread = threading.Thread(target=request)
        thread.start()
        thread.join()
    finally:
        del model.index.search
    if seen["default"] < 2:
        pytest.skip("one core: OpenMP's default is one thread already")
    assert seen["threads"] == 1 and seen["after"] == seen["default"]


def test_unknown_viewer_has_no_vector(model):
    assert model.viewer_vector(999) is None


def test_viewer_vectors_are_unit_length(model):
    assert np.allclose(np.linalg.norm(model.viewer_vectors, axis=1), 1.0, atol=1e-5)


def test_save_load_round_trip_gives_identical_search(model, tmp_path):
    folder = emb.save(model, tmp_path / "embeddings" / f"dt={DAY}")
    loaded = emb.load(folder)
    assert loaded.day == DAY and loaded.counts == model.counts and loaded.params == model.params
    assert np.array_equal(loaded.viewer_ids, model.viewer_ids)
    for v in (1, 17, 45):
        a_ids, a_sims = model.nearest_authors(model.viewer_vector(v), 10, exclude={101})
        b_ids, b_sims = loaded.nearest_authors(loaded.viewer_vector(v), 10, exclude={101})
        assert np.array_equal(a_ids, b_ids) and np.array_equal(a_sims, b_sims)


def test_same_seed_same_vectors(conf, model):
    again = emb.fit_embeddings(two_communities(), DAY, conf)
    assert np.array_equal(again.viewer_vectors, model.viewer_vectors)
    query = model.viewer_vectors[:5]
    assert np.array_equal(again.index.search(query, 10)[1], model.index.search(query, 10)[1])


def test_hnsw_index_finds_the_same_community(conf):
    hnsw = emb.fit_embeddings(two_communities(), DAY, conf.model_copy(update={"index": "hnsw"}))
    ids, _ = hnsw.nearest_authors(hnsw.viewer_vector(40), 9, exclude={201})
    assert set(ids.tolist()) == set(range(202, 211))


def test_pair_weights_long_dwell_counts_and_negatives_subtract(conf):
    frame = pd.DataFrame(
        {
            "viewer_id": [1, 1, 1, 1, 2, 2],
            "author_id": [10, 10, 11, 11, 10, 2],  # (2, 2): own post, ignored
            "type": ["dwell", "dwell", "like", "report", "like", "like"],  # (1, 11) nets < 0
            "value": [20_000.0, 3_000.0, None, None, None, None],
            "ts": pd.Timestamp(f"{DAY}T23:00:00Z"),
        }
    )
    pairs = emb.pair_weights(frame, DAY, conf.model_copy(update={"half_life_days": 0}))
    got = {(r.viewer_id, r.author_id): r.weight for r in pairs.itertuples()}
    w = EMBEDDING_WEIGHTS
    assert got == pytest.approx({(1, 10): w["long_dwell"] + w["dwell"], (2, 10): w["like"]})


def test_config_section_overrides_defaults():
    conf = EmbeddingConfig.from_section({"factors": 16, "weights": {"like": 2.0}})
    assert conf.factors == 16 and conf.weights["like"] == 2.0 and conf.weights["save"] == 1.5
    with pytest.raises(ValueError, match="unknown"):
        EmbeddingConfig.from_section({"factorz": 16})


def test_nothing_to_learn_switches_the_source_off_with_the_reason(conf, tmp_path):
    """Only hides and short dwells (or no engagement at all): no positive pair, no model. The day's
    model is saved switched off, and the embedding source reports `disabled` with the reason."""
    from candidate_gen.config import CandidateConfig
    from candidate_gen.reads import StepReader
    from candidate_gen.sources.base import DISABLED, SourceRequest, run_sources
    from candidate_gen.sources.embedding_source import EmbeddingSource

    negative = two_communities()
    negative = negative[negative["type"] == "hide"]
    for frame in (negative, negative.iloc[:0]):
        with pytest.raises(emb.NothingToLearn, match="no positive engagements"):
            emb.fit_embeddings(frame, DAY, conf)
    off = emb.EmbeddingModel.switched_off(DAY, "no positive engagements to learn from", conf)
    again = emb.load(emb.save(off, tmp_path / f"dt={DAY}"))
    assert again.disabled == "no positive engagements to learn from" and len(again.author_ids) == 0
    assert again.viewer_vector(1) is None and again.dim == conf.factors
    import redis

    nowhere = redis.Redis.from_url("redis://127.0.0.1:1/0")  # a switched-off source never asks it
    source = EmbeddingSource(CandidateConfig.load(), again)
    (outcome,) = run_sources([source], SourceRequest(1, 0), StepReader(nowhere))
    assert outcome.status == DISABLED and not outcome.degraded and not outcome.candidates
    assert outcome.error == f"embedding model {DAY} switched off: no positive engagements to learn from"
