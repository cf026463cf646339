"""bench-serving's floor: the irreducible work of the requests the load sends, timed without the
service around it.

For each sampled viewer the fast config's Home pipeline runs once in this process (no side effects)
with every Redis command it sends recorded, round trip by round trip (sources' steps, the privacy
filters' read, the feature MGET). The floor of that request is then:

- each recorded round trip sent again as it was, raw, on one socket, its replies read by hiredis's
  C parser (no redis-py, no pipeline objects), one after the other as the stages need them; plus
- the compiled champion scoring the same feature matrix the pipeline scored, as the scorer does
  (cascade included).

So the floor is what Valkey and the model cost this request on this machine; everything above it
in the service's latency is the service's own work (Python stages, HTTP, queueing).
`p50_over_floor` is the service's p50 at one in flight over the floor's p50.
"""

from __future__ import annotations

import gc
import socket
import time
from dataclasses import replace
from urllib.parse import urlparse

import hiredis
import numpy as np
import redis

from data.settings import Settings
from serving import pipeline as pl
from serving.app import RankingApp, wait_ready
from serving.config import ServingConfig


class RecordingConnection(redis.Connection):
    """A redis-py connection that keeps a copy of every packed command it sends (one entry per send:
    one round trip), while `log` is a list."""

    log: list[bytes] | None = None

    def send_packed_command(self, command, check_health: bool = True) -> None:
        if RecordingConnection.log is not None:
            parts = [command] if isinstance(command, (bytes, str)) else command
            RecordingConnection.log.append(b"".join(p.encode() if isinstance(p, str) else bytes(p) for p in parts))
        super().send_packed_command(command, check_health)


def _record_everything() -> None:
    """Every Redis pool of this process makes recording connections from now on (the app's clients
    are built inside RankingApp.from_settings; a benchmark reaches them through the collector)."""
    for pool in (o for o in gc.get_objects() if isinstance(o, redis.ConnectionPool)):
        pool.connection_class = RecordingConnection
        pool.disconnect()
        pool.reset()  # the pooled connections go: new ones are made of the recording class


def _commands(payload: bytes) -> int:
    """How many commands a recorded send holds (it is RESP: hiredis parses requests too)."""
    reader = hiredis.Reader()
    reader.feed(payload)
    n = 0
    while reader.gets() is not False:
        n += 1
    return n


class RawSocket:
    def __init__(self, url: str):
        parsed = urlparse(url)
        self.sock = socket.create_connection((parsed.hostname, parsed.port or 6379))
        self.sock.setsockopt(socket.IPPROTO_TCP, socket.TCP_NODELAY, 1)

    def round_trip(self, payload: bytes, replies: int) -> None:
        reader = hiredis.Reader()
        self.sock.sendall(payload)
        got = 0
        while got < replies:
            reader.feed(self.sock.recv(1 << 20))
            while got < replies and reader.gets() is not False:
                got += 1

    def close(self) -> None:
        self.sock.close()


def measure_floor(workspace: Settings, config: ServingConfig, viewers: list[int], limit: int,
                  repeats: int = 3) -> dict:
    """The floor per sampled viewer (ms, the median of `repeats` replays), and how it splits."""
    cfg = config.with_("impressions", enabled=False, record_seen=False)
    app = RankingApp.from_settings(workspace, cfg)
    try:
        if not wait_ready(app, 600):
            raise RuntimeError(f"the in-process app did not get ready: {app.models.status()}")
        _record_everything()
        home = replace(app.home, side_effects=())
        raw = RawSocket(workspace.redis_url)
        floors, redis_ms, score_ms, trips = [], [], [], []
        for viewer in viewers:
            RecordingConnection.log = []
            query = pl.FeedQuery("floor", "home", viewer, limit, app.clock.now_ms(), pl.Deadline(60_000.0))
            state = pl.run(home, query)
            sends, RecordingConnection.log = RecordingConnection.log, None
            model = app.models.current("home")
            if state.model_features is None or model is None:
                continue  # ranked by the heuristic: not the path being measured
            keep = max(cfg.cascade.keep, 2 * limit) if cfg.cascade.enabled else None
            groups = state.candidates.in_network.astype(np.int8)
            payloads = [(p, _commands(p)) for p in sends]
            r, s = [], []
            for _ in range(repeats):
                t = time.perf_counter()
                for payload, n in payloads:
                    raw.round_trip(payload, n)
                r.append((time.perf_counter() - t) * 1000)
                t = time.perf_counter()
                model.score(state.model_features, keep, groups, limit)
                s.append((time.perf_counter() - t) * 1000)
            redis_ms.append(float(np.median(r)))
            score_ms.append(float(np.median(s)))
            floors.append(redis_ms[-1] + score_ms[-1])
            trips.append(len(payloads))
        raw.close()
    finally:
        RecordingConnection.log = None
        app.close()
    if not floors:
        raise RuntimeError("no sampled request was scored by the champion: no floor to measure")
    return {
        "requests": len(floors),
        "floor_p50_ms": round(float(np.median(floors)), 2),
        "floor_p99_ms": round(float(np.percentile(floors, 99)), 2),
        "redis_p50_ms": round(float(np.median(redis_ms)), 2),
        "score_p50_ms": round(float(np.median(score_ms)), 2),
        "round_trips_p50": float(np.median(trips)),
        "method": "per request: its recorded Redis round trips replayed raw on one socket (hiredis parses "
                  "the replies) one after the other, plus the compiled champion scoring its feature "
                  "matrix (cascade as served); median of 3 replays",
    }
