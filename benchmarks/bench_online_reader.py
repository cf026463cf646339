"""Feast `get_online_features` vs the packed reader, same Redis, same requests, same run.

    uv run python -m benchmarks.bench_online_reader [--posts 10000 --reps 150]

A request is one viewer and 1,000 candidate posts: post features, the post's author's features,
the viewer-author pair features and the viewer's features (28 features, 4 views, one composite).
Both readers get the same requests, interleaved so machine noise hits both alike; values are
checked equal (Feast None <-> missing flag) before anything is timed.
"""

from __future__ import annotations

import argparse
import statistics
import tempfile
import time
from pathlib import Path

import numpy as np

from benchmarks.common import PeakRss, interleaved, ms_percentile, write_result
from data.columns import AUTHOR_ID, POST_ID, VIEWER_ID
from data.redis_server import EmbeddedRedis
from features.online import PackedFeatureReader, PackedViewWriter
from features.online.sample_repo import ANCHOR, SERVICE, SampleSizes, build_sample_repo

WINDOW = (ANCHOR.replace(year=ANCHOR.year - 1), ANCHOR)


def make_requests(repo, n_requests: int, candidates: int, seed: int) -> list[dict[str, np.ndarray]]:
    rng = np.random.default_rng(seed)
    posts = np.sort(repo.frames["post_stats"][POST_ID].unique())
    authors = np.sort(repo.frames["author_stats"][AUTHOR_ID].unique())
    viewers = np.sort(repo.frames["viewer_stats"][VIEWER_ID].unique())
    author_of = dict(zip(posts.tolist(), rng.choice(authors, size=len(posts)).tolist()))
    requests = []
    for _ in range(n_requests):
        # ~2% of candidates are posts the store has never seen (fresh uploads): id + 5
        chosen = rng.choice(posts, size=candidates, replace=False)
        fresh = rng.random(candidates) < 0.02
        post_ids = np.where(fresh, chosen + 5, chosen).astype(np.int64)
        requests.append(
            {
                POST_ID: post_ids,
                AUTHOR_ID: np.array([author_of[int(p)] for p in chosen], dtype=np.int64),
                VIEWER_ID: np.full(candidates, rng.choice(viewers), dtype=np.int64),
            }
        )
    return requests


def check_parity(repo, reader: PackedFeatureReader, request: dict[str, np.ndarray]) -> None:
    expected = repo.store.get_online_features(
        repo.service, {k: v.tolist() for k, v in request.items()}
    ).to_dict()
    block = reader.read(request)
    for j, name in enumerate(block.feature_names):
        col = expected[name]
        want_missing = np.array([v is None for v in col])
        want = np.array([np.nan if v is None else float(v) for v in col], dtype=np.float32)
        np.testing.assert_array_equal(block.missing[:, j], want_missing, err_msg=name)
        np.testing.assert_array_equal(block.values[:, j], want, err_msg=name)


def main(argv: list[str] | None = None) -> dict:
    parser = argparse.ArgumentParser(description=__doc__)
    parser.add_argument("--posts", type=int, default=10_000)
    parser.add_argument("--authors", type=int, default=1_000)
    parser.add_argument("--viewers", type=int, default=100)
    parser.add_argument("--pairs", type=int, default=20_000)
    parser.add_argument("--candidates", type=int, default=1_000)
    parser.add_argument("--reps", type=int, default=150, help="Feast calls; fast reads = 20x")
    args = parser.parse_args(argv)

    sizes = SampleSizes(posts=args.posts, authors=args.authors, viewers=args.viewers,
                        pairs=args.pairs, rows_per_entity=2, null_fraction=0.05)
    with tempfile.TemporaryDirectory() as tmp, EmbeddedRedis() as redis_server, PeakRss() as rss:
        repo = build_sample_repo(Path(tmp), redis_server.url, project="bench", sizes=sizes)
        t0 = time.perf_counter()
        repo.store.materialize(*WINDOW)
        t1 = time.perf_counter()
        writer = PackedViewWriter(repo.store)
        for view in repo.views:
            writer.pack_window(view, *WINDOW)
        t2 = time.perf_counter()

        reader = PackedFeatureReader.from_feature_store(repo.store, SERVICE)
        requests = make_requests(repo, 50, args.candidates, seed=11)
        for request in requests[:3]:
            check_parity(repo, reader, request)
        columnar = [{k: v.tolist() for k, v in r.items()} for r in requests]  # Feast's best input

        for r in range(5):  # warm both paths (registry cache, connections)
            repo.store.get_online_features(repo.service, columnar[r]).to_dict()
            reader.read(requests[r])

        feast_s, fast_s, first_after_feast = interleaved(
            lambda k: repo.store.get_online_features(repo.service, columnar[k % len(requests)]).to_dict(),
            lambda k: reader.read(requests[k % len(requests)]),
            rounds=max(1, args.reps // 5),
        )

        block = reader.read(requests[0])
        result = {
            "entities": args.candidates,
            "features": len(reader.feature_names),
            "views": list(reader.view_names),
            "keys_per_request": sum(
                len(set(zip(*(requests[0][c].tolist() for c in cols))))
                for cols in reader.request_columns
            ),
            "found_rate_by_view": dict(zip(reader.view_names, block.view_found.mean(axis=0).round(3).tolist())),
            "fast_p50_ms": ms_percentile(fast_s, 50),
            "fast_p99_ms": ms_percentile(fast_s, 99),
            "fast_mean_ms": round(statistics.fmean(fast_s) * 1e3, 3),
            "fast_calls": len(fast_s),
            "fast_first_after_feast_p50_ms": ms_percentile(first_after_feast, 50),
            "feast_p50_ms": ms_percentile(feast_s, 50),
            "feast_p99_ms": ms_percentile(feast_s, 99),
            "feast_calls": len(feast_s),
            "speedup_p50": round(ms_percentile(feast_s, 50) / ms_percentile(fast_s, 50), 1),
            "parity_checked_requests": 3,
            "offline_rows": int(sum(len(f) for f in repo.frames.values())),
            "feast_materialize_s": round(t1 - t0, 2),
            "pack_s": round(t2 - t1, 2),
        }
    result["peak_rss_mb"] = rss.peak_mb
    write_result("online_reader", result)
    return result


if __name__ == "__main__":
    main()
