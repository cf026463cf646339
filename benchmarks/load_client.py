"""A closed-loop HTTP load client for the ranking service, run as its own process.

    python -m benchmarks.load_client --url http://127.0.0.1:3001 --viewers viewers.json \
        --out run.json [--concurrency 2] [--duration 60 | --requests 150] [--warmup 20]

`concurrency` workers (asyncio + aiohttp, one keep-alive connection each, opened one after another
while the previous worker's first request is in flight) each send the next request as soon as
their previous one is answered: POST /v1/feed/home {"viewer_id", "limit"},
cycling through the viewers in order. The first `warmup` requests are sent and dropped; then the
run lasts `duration` seconds or `requests` requests. Every recorded request keeps the client-side
latency, the HTTP status (0: an exception, with its text) and, from the response body, what the
service reports about itself: stage_ms, degraded (+ reasons), scorer, model_version, candidates per
source, filtered per reason, and the served post ids. Written as one JSON file for the benchmark.
Requests carry the workspace's API token (data.settings.serving_secrets: LOUPE_API_TOKEN, else the
token file of LOUPE_HOME).
"""

from __future__ import annotations

import argparse
import asyncio
import json
import time
from pathlib import Path

import aiohttp

from data.settings import get_settings, serving_secrets

ROUTE = "/v1/feed/home"
OPEN_NEXT_AFTER_S = 0.003  # into a worker's first request, the next worker opens its connection
KEPT = ("stage_ms", "degraded", "degraded_reasons", "scorer", "model_version", "candidates", "filtered")


def record(viewer: int, started: float, elapsed_ms: float, status: int, body: bytes | None, error: str | None) -> dict:
    out: dict = {"viewer_id": viewer, "t": round(started, 4), "ms": round(elapsed_ms, 3), "status": status}
    if error is not None:
        out["error"] = error
    if status == 200 and body is not None:
        try:
            payload = json.loads(body)
            out.update({k: payload.get(k) for k in KEPT})
            out["items"] = [item["post_id"] for item in payload.get("items", [])]
        except (ValueError, KeyError, TypeError) as exc:
            out["status"], out["error"] = -1, f"unparseable body: {exc}: {body[:300]!r}"
    elif body is not None:
        out["body"] = body[:1000].decode("utf-8", "replace")
    return out


async def run(url: str, viewers: list[int], concurrency: int, limit: int, warmup: int,
              duration_s: float | None, requests: int | None, timeout_s: float, token: str) -> dict:
    counter = {"next": 0}
    results: list[dict] = []
    phase = {"recording": warmup == 0, "t0": time.perf_counter(), "end": None}

    def next_viewer() -> tuple[int, int] | None:
        k = counter["next"]
        counter["next"] += 1
        if k >= warmup and not phase["recording"]:
            phase["recording"], phase["t0"] = True, time.perf_counter()
            if duration_s is not None:
                phase["end"] = phase["t0"] + duration_s
        if phase["recording"]:
            if requests is not None and k - warmup >= requests:
                return None
            if phase["end"] is not None and time.perf_counter() >= phase["end"]:
                return None
        return k, viewers[k % len(viewers)]

    timeout = aiohttp.ClientTimeout(total=timeout_s)
    connector = aiohttp.TCPConnector(limit=concurrency, force_close=False)
    headers = {"Authorization": f"Bearer {token}"}
    # Connections are opened one after another, each while the one before has a request in flight:
    # a service worker busy with that request is not the one that accepts the next connection, so
    # the connections spread over the workers as a balancer would spread them (opened at once, they
    # all land on whichever worker accepts first, and the others idle; serving_load counts them).
    opened = [asyncio.Event() for _ in range(concurrency)]
    async with aiohttp.ClientSession(timeout=timeout, connector=connector, headers=headers) as session:
        async def worker(i: int) -> None:
            if i:
                await opened[i - 1].wait()
            first = True
            while (nxt := next_viewer()) is not None:
                k, viewer = nxt
                started = time.perf_counter()
                status, body, error = 0, None, None
                if first:
                    asyncio.get_running_loop().call_later(OPEN_NEXT_AFTER_S, opened[i].set)
                    first = False
                try:
                    async with session.post(url + ROUTE, json={"viewer_id": viewer, "limit": limit}) as resp:
                        body = await resp.read()
                        status = resp.status
                except Exception as exc:  # noqa: BLE001 - every failure is a counted error
                    error = f"{type(exc).__name__}: {exc}"
                elapsed_ms = (time.perf_counter() - started) * 1000
                if k >= warmup:
                    results.append(record(viewer, started - phase["t0"], elapsed_ms, status, body, error))

            opened[i].set()  # a worker with nothing left to send never holds the next one back

        if duration_s is not None and warmup == 0:
            phase["end"] = phase["t0"] + duration_s
        await asyncio.gather(*(worker(i) for i in range(concurrency)))
    wall_s = time.perf_counter() - phase["t0"]
    return {"url": url, "concurrency": concurrency, "limit": limit, "warmup": warmup,
            "wall_s": round(wall_s, 3), "requests": results}


def main(argv: list[str] | None = None) -> None:
    parser = argparse.ArgumentParser(description=__doc__)
    parser.add_argument("--url", required=True)
    parser.add_argument("--viewers", required=True, help="JSON file: a list of viewer ids")
    parser.add_argument("--out", required=True)
    parser.add_argument("--concurrency", type=int, default=2)
    parser.add_argument("--limit", type=int, default=30)
    parser.add_argument("--warmup", type=int, default=20)
    parser.add_argument("--duration", type=float, help="seconds to record (after the warm-up)")
    parser.add_argument("--requests", type=int, help="requests to record (after the warm-up)")
    parser.add_argument("--offset", type=int, default=0, help="start this far into the viewer list")
    parser.add_argument("--timeout", type=float, default=30.0)
    args = parser.parse_args(argv)
    if (args.duration is None) == (args.requests is None):
        parser.error("give exactly one of --duration, --requests")
    viewers = json.loads(Path(args.viewers).read_text())
    viewers = viewers[args.offset % len(viewers):] + viewers[: args.offset % len(viewers)]
    out = asyncio.run(run(args.url.rstrip("/"), viewers, args.concurrency, args.limit, args.warmup,
                          args.duration, args.requests, args.timeout,
                          serving_secrets(get_settings(), create=False).api_token))
    Path(args.out).write_text(json.dumps(out))


if __name__ == "__main__":
    main()
