"""What every benchmark shares: timing, memory sampling of the process tree, writing results, a free
port for the services a benchmark starts."""

from __future__ import annotations

import json
import platform
import socket
import threading
import time
from contextlib import contextmanager
from datetime import UTC, datetime
from pathlib import Path

import psutil

RESULTS_DIR = Path(__file__).resolve().parent / "results"


class PeakRss:
    """Samples the RSS of this process and its children (the Spark JVM, servers) in a thread."""

    def __init__(self, interval_s: float = 0.25):
        self.interval_s = interval_s
        self.peak_bytes = 0
        self._stop = threading.Event()
        self._thread = threading.Thread(target=self._run, daemon=True)

    def _sample(self) -> int:
        me = psutil.Process()
        total = 0
        for proc in [me, *me.children(recursive=True)]:
            try:
                total += proc.memory_info().rss
            except psutil.Error:
                pass
        return total

    def _run(self) -> None:
        while not self._stop.is_set():
            self.peak_bytes = max(self.peak_bytes, self._sample())
            self._stop.wait(self.interval_s)

    def __enter__(self) -> PeakRss:
        self._thread.start()
        return self

    def __exit__(self, *exc: object) -> None:
        self._stop.set()
        self._thread.join()

    @property
    def peak_mb(self) -> float:
        return round(self.peak_bytes / 2**20, 1)


@contextmanager
def stopwatch(into: dict, name: str):
    start = time.perf_counter()
    yield
    into[name] = round(time.perf_counter() - start, 2)


def write_result(area: str, result: dict) -> Path:
    RESULTS_DIR.mkdir(parents=True, exist_ok=True)
    result = {
        **result,
        "measured_at": datetime.now(UTC).isoformat(timespec="seconds"),
        "machine": {"cpus": psutil.cpu_count(), "python": platform.python_version()},
    }
    path = RESULTS_DIR / f"{area}.json"
    path.write_text(json.dumps(result, indent=2) + "\n")
    print(json.dumps(result, indent=2))
    return path


def free_port() -> int:
    with socket.socket() as sock:
        sock.bind(("127.0.0.1", 0))
        return sock.getsockname()[1]


def ms_percentile(samples_s: list[float], q: float) -> float:
    """The q-th percentile of durations in seconds, in milliseconds."""
    import numpy as np

    return round(float(np.percentile(samples_s, q)) * 1e3, 3)


def interleaved(slow, fast, rounds: int, slow_per_round: int = 5, fast_per_round: int = 100):
    """Time `slow(i)` and `fast(i)` in alternating blocks so both share the machine's noise.

    Blocks rather than single calls: the reads right after a slow call run slower (caches and
    allocator churned by it), a cost a serving process that only runs the fast path does not pay;
    those first reads are returned apart. Returns (slow_s, fast_s, fast_first_after_slow_s).
    """
    import gc

    slow_s: list[float] = []
    fast_s: list[float] = []
    first_after: list[float] = []
    for r in range(rounds):
        gc.collect()
        for i in range(slow_per_round):
            start = time.perf_counter()
            slow(slow_per_round * r + i)
            slow_s.append(time.perf_counter() - start)
        gc.collect()
        for i in range(fast_per_round):
            start = time.perf_counter()
            fast(r + i)
            (first_after if i == 0 else fast_s).append(time.perf_counter() - start)
    return slow_s, fast_s, first_after
