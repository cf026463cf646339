"""POST /v1/search's query path on the medium world (the tiny one when the medium lake is absent):
latency of the in-process search (parse, the FTS5 match of the newest `[search] window` posts with
their BM25, the privacy filters' one Redis round trip, the relationships' one, the score), and of the
same queries through the service's HTTP app, against a naive LIKE '%word%' scan of the same table
and against BM25 over every match (FTS5's ORDER BY rank), same run; and the relevance of the answers
against the simulator's truth (each post's main topic).

Setup (timed, not compared): the index built from the lake's posts partitions; the social graph
(accounts, follows, blocks, mutes, deletions' tombstones) replayed from the lake into an embedded
Valkey of the benchmark's own by the fan-out worker (no feed caches), so the filters read real state.

Queries (seeded), for random accounts as viewers: a topic's caption noun ("dinner": food), its bare
hashtag ("#food"), or the two together. precision@10: of the first 10 posts answered, the share
whose main topic (truth) is the query's topic.

    python -m benchmarks.bench_search [--queries 2000] [--naive 200] [--http 500] [--world medium|tiny]
        -> benchmarks/results/search.json
"""

from __future__ import annotations

import argparse
import json
import statistics
import time

import numpy as np
import pyarrow.parquet as pq
import redis

from benchmarks.common import PeakRss, stopwatch, write_result
from benchmarks.workspace import add_world_argument, chosen_world, ensure_lake, lake_ready
from candidate_gen import events as ev
from candidate_gen.fanout import FanoutWorker
from candidate_gen.filters import search_chain
from candidate_gen.rebuild import lake_days
from candidate_gen.search.lake_refresh import refresh_from_lake
from candidate_gen.search.post_text_index import (
    CAPTION_WEIGHT,
    HASHTAG_WEIGHT,
    PostTextIndex,
    SearchIndexReader,
)
from data.days import day_end_ms
from data.lake import partition_days
from data.redis_server import EmbeddedRedis
from data.world.content import CAPTION_NOUNS
from serving.config import ServingConfig
from serving.search.post_search import PostSearch

LIMIT = 20


def percentiles(ms: list[float]) -> dict:
    a = np.asarray(ms)
    return {"n": len(ms), "p50_ms": round(float(np.percentile(a, 50)), 3),
            "p99_ms": round(float(np.percentile(a, 99)), 3), "mean_ms": round(statistics.fmean(ms), 3)}


def queries(topics: list[str], n: int, n_users: int, seed: int = 7) -> list[tuple[int, int, str, str]]:
    """(viewer, topic index, kind, text)."""
    rng = np.random.default_rng(seed)
    out = []
    for _ in range(n):
        t = int(rng.integers(len(topics)))
        kind = ("noun", "hashtag", "both")[int(rng.choice(3, p=[0.5, 0.3, 0.2]))]
        noun, tag = CAPTION_NOUNS[topics[t]], "#" + topics[t]
        text = {"noun": noun, "hashtag": tag, "both": f"{tag} {noun}"}[kind]
        out.append((int(rng.integers(1, n_users + 1)), t, kind, text))
    return out


def naive_like(db, words: tuple[str, ...], limit: int) -> list[int]:
    """The naive path: every word as a LIKE '%word%' over both columns, scanning the table from the
    newest post back until `limit` match (the same window the search reads; no relevance)."""
    where = " AND ".join(["(hashtags || ' ' || caption) LIKE ?"] * len(words))
    rows = db.execute(f"SELECT post_id FROM posts WHERE {where} ORDER BY doc DESC LIMIT ?",
                      (*[f"%{w}%" for w in words], limit)).fetchall()
    return [r[0] for r in rows]


def bm25_all(db, terms, limit: int) -> list[int]:
    """The design not taken: BM25 over every match, the best `limit` (FTS5's ORDER BY rank)."""
    rows = db.execute(f"SELECT rowid FROM post_text WHERE post_text MATCH ? ORDER BY bm25(post_text, "
                      f"{HASHTAG_WEIGHT}, {CAPTION_WEIGHT}) LIMIT ?", (terms.expression(), limit)).fetchall()
    return [r[0] for r in rows]


def through_http(client, cfg: ServingConfig, cands, path, now_ms: int, qs: list) -> list[float]:
    """The same queries through the service's HTTP app (BentoML's ASGI app in-process, a Starlette
    test client: validation, the API guard, JSON both ways); no feature store or registry needed."""
    from starlette.testclient import TestClient

    from serving.app import RankingApp
    from serving.clock import Clock
    from serving.model_store import ModelStore
    from serving.service import ranking_service
    from serving.stages.lazy_hydrator import LazyHydrator

    def unreachable():
        raise ConnectionError("search needs no feature store")

    cfg = cfg.model_copy(update={"candidates": cands})
    app = RankingApp.build(cfg, candidates_client=client, hydrator=LazyHydrator(unreachable, retry_s=3600),
                           models=ModelStore(lambda name: None, None, cfg.model, cfg.cascade, "/nonexistent"),
                           clock=Clock(now_ms), search_index=path)
    app.warm = True
    took = []
    with TestClient(ranking_service(lambda: app).to_asgi()) as http:
        http.headers["authorization"] = f"Bearer {app.access.token}"
        for viewer, _, _, text in qs[:50]:
            http.post("/v1/search", json={"viewer_id": viewer, "query": text, "limit": LIMIT})
        for viewer, _, _, text in qs:
            t0 = time.perf_counter()
            r = http.post("/v1/search", json={"viewer_id": viewer, "query": text, "limit": LIMIT})
            took.append((time.perf_counter() - t0) * 1000)
            assert r.status_code == 200 and not r.json()["degraded"], r.text
    return took


def main(argv: list[str] | None = None) -> None:
    parser = argparse.ArgumentParser(prog="python -m benchmarks.bench_search")
    parser.add_argument("--queries", type=int, default=2000)
    parser.add_argument("--naive", type=int, default=200, help="queries also run as the naive LIKE scan")
    parser.add_argument("--http", type=int, default=500, help="queries also sent through the HTTP app")
    add_world_argument(parser)
    args = parser.parse_args(argv)
    settings = chosen_world(args.world)
    if settings.world == "medium" and not lake_ready(settings):
        raise SystemExit("the medium world's lake is not complete: make bench-pipeline builds it")
    world = ensure_lake(settings)
    meta = json.loads((settings.truth_dir / "meta.json").read_text())
    topics = meta["topics"]
    truth = pq.read_table(settings.truth_dir / "posts.parquet", columns=["post_id", "main_topic"]).to_pandas()
    main_topic = dict(zip(truth["post_id"].tolist(), truth["main_topic"].tolist(), strict=True))
    n_users = pq.read_metadata(settings.truth_dir / "users.parquet").num_rows
    last_day = partition_days(settings.lake_dir, "posts")[-1]
    now_ms = day_end_ms(last_day)
    setup: dict = {}
    result: dict = {"world": settings.world, "users": n_users, "days": len(world["days"]), "limit": LIMIT,
                    "search_config": ServingConfig.load().search.model_dump()}

    path = settings.search_index_file
    for suffix in ("", "-wal", "-shm"):  # the benchmark's own index (Loupe's file), built afresh
        path.with_name(path.name + suffix).unlink(missing_ok=True)
    with PeakRss() as rss:
        with stopwatch(setup, "index_build_s"), PostTextIndex(path) as index:
            built = refresh_from_lake(index, settings.lake_dir)
        result["index"] = {**built.as_metadata(), "file_mb": round(path.stat().st_size / 2**20, 1)}
        cfg = ServingConfig.load()
        cands = cfg.candidates.with_feed(key_prefix="bs:")
        with EmbeddedRedis() as server:
            client = redis.Redis.from_url(server.url)
            with stopwatch(setup, "graph_replay_s"):
                worker = FanoutWorker(client, cands, name="bench-search", fanout=False)
                for day in lake_days(settings.lake_dir, last_day):
                    worker.consume(ev.lake_day(settings.lake_dir, day), None)  # a scratch replay
            reader = SearchIndexReader(path)
            search = PostSearch(reader, search_chain(client, cands, attempts=3), client, cands.keys, cfg.search)
            qs = queries(topics, args.queries, n_users)
            for viewer, _, _, text in qs[:50]:  # warm: connections, page cache
                search.search(viewer, search.terms(text), LIMIT, now_ms)

            full, fts, like, ranked_all = [], [], [], []
            window = max(cfg.search.window, LIMIT * cfg.search.overfetch)
            precision: dict[str, list[float]] = {"noun": [], "hashtag": [], "both": []}
            empty = 0
            for i, (viewer, topic, kind, text) in enumerate(qs):
                t0 = time.perf_counter()
                terms = search.terms(text)
                outcome = search.search(viewer, terms, LIMIT, now_ms)
                full.append((time.perf_counter() - t0) * 1000)
                assert not outcome.degraded, outcome.degraded
                top = [it["post_id"] for it in outcome.items[:10]]
                if top:
                    precision[kind].append(sum(main_topic.get(p) == topic for p in top) / len(top))
                else:
                    empty += 1
                t0 = time.perf_counter()
                reader.match(terms, window, cfg.search.prefix)
                fts.append((time.perf_counter() - t0) * 1000)
                if i < args.naive:
                    t0 = time.perf_counter()
                    naive_like(reader._connection(), terms.words, window)
                    like.append((time.perf_counter() - t0) * 1000)
                    t0 = time.perf_counter()
                    bm25_all(reader._connection(), terms, LIMIT * cfg.search.overfetch)
                    ranked_all.append((time.perf_counter() - t0) * 1000)
            reader.close()
            http = through_http(client, cfg, cands, path, now_ms, qs[:args.http]) if args.http else []
    result["setup"] = setup
    result["latency"] = {
        "search_in_process": percentiles(full),
        "fts_match_only": percentiles(fts),
        "naive_like_scan": percentiles(like),
        "fts_bm25_over_all_matches": percentiles(ranked_all),
        "http_in_process": percentiles(http) if http else None,
        "note": " ".join((
            "search_in_process: parse + FTS5 match (the newest `window` matches) + privacy filters (one Valkey",
            "round trip) + relationships (one round trip) + score; fts_match_only (the newest `window` matches",
            "with their BM25), naive_like_scan (LIKE '%word%' from the newest post back to `window` matches) and",
            "fts_bm25_over_all_matches (BM25 over every match, best 5x the page): the same queries' retrieval",
            "alone (the last two on the first --naive queries), same run; http_in_process: the first --http",
            "queries through the service's HTTP app (BentoML ASGI, Starlette test client, one at a time)")),
    }
    result["relevance"] = {
        "precision_at_10": {k: round(statistics.fmean(v), 4) if v else None for k, v in precision.items()},
        "queries_per_kind": {k: len(v) for k, v in precision.items()},
        "empty_answers": empty,
    }
    result["target"] = {"p99_ms_at_most": 100.0, "met": percentiles(full)["p99_ms"] <= 100.0}
    result["peak_rss_mb"] = rss.peak_mb
    write_result("search", result)


if __name__ == "__main__":
    main()
