"""Impressions the ranking service served, logged into landing in the impressions log contract.

Log and learn: every served response is written as `impressions` landing lines (docs/log_contracts.md
§2.6) with the model version, score and exact feature vector used at serve time, so the next
training run learns from what was actually served, with no train/serve skew; and with the logging
policy's propensity of each served (post, position) when the page was randomised (the exploration
share), so any other ranker can be judged on these logs off-policy (training/ope.py).

Each line also says which live A/B routed the request and the viewer's arm in it (`experiment`,
`arm`; serving.experiment), so later training and analysis can tell the arms' impressions apart.

Logging must never slow down or break serving. `log()` only counts and enqueues (microseconds); a
daemon thread formats the lines and appends them. When the writer falls behind (slow disk, burst),
whole responses are dropped and counted rather than letting memory grow or the request wait. No
error reaches the caller: failures are counted and logged.

Layout: `<landing>/impressions/<YYYY-MM-DD>/<instance>-<pid>.jsonl`, one file per process and UTC
day of the serve time (= the landing day, as lines are written as they are served), so processes
never interleave partial lines. Create the writer in each worker process (its thread does not
survive a fork).

Lines are built column-wise with Arrow string kernels, like `data.world.landing`: the writer
thread shares the GIL with request handling, so per-row Python work is kept out of it. NaN/inf
never reach the file (they are not JSON): a missing feature is `null` inside the list, and a
non-finite score is `null`.
"""

from __future__ import annotations

import atexit
import json
import logging
import os
import queue
import threading
import time
from collections.abc import Callable
from dataclasses import dataclass
from functools import lru_cache
from pathlib import Path
from typing import Any

import numpy as np
import pyarrow as pa
import pyarrow.compute as pc

from data import columns as c
from data.days import day_of_ms, iso_ms
from data.stream.entries import Event
from data.stream.valkey_stream import ValkeyStream

log = logging.getLogger(__name__)

LOG_TYPE = "impressions"
_STOP = object()  # queue sentinel: write what is buffered, then end the thread


@dataclass(slots=True)
class _Response:
    """One served response, exactly as handed to `log()`; formatted on the writer thread."""

    n: int
    request_id: str
    viewer_id: int
    surface: str
    ts_ms: int
    post_ids: Any
    positions: Any
    sources: Any
    scores: Any
    model_version: str | None
    features: np.ndarray | None
    propensities: Any = None  # logging P(post at position) per row; None: a deterministic page
    experiment: str | None = None  # the live A/B that routed the request; None: none ran
    arm: str | None = None  # the viewer's arm in it


@dataclass(frozen=True, slots=True)
class _Formatted:
    """One response's landing lines (each ending in a newline), and what the stream keys them by."""

    text: str
    viewer_id: int
    ts_ms: int


class StreamSink:
    """Served impressions onto the event stream (data/stream), one event per line keyed by viewer,
    at the serve clock: the archiver lands them in the same landing day a file would hold.

    Connects on first use and again after a failure: a stream down at start, or going down, never
    fails the worker. `append` says whether the stream took the lines; when it did not, the writer
    appends them to its landing file instead (`fallback_rows` counts them), so nothing is lost.
    """

    def __init__(self, connect: Callable[[], ValkeyStream]):
        self._connect = connect
        self._stream: ValkeyStream | None = None
        self._down = False  # warned of the outage already: once per outage, not once per flush
        self.streamed_rows = self.fallback_rows = 0

    def append(self, responses: list[_Formatted]) -> bool:
        events = [Event(LOG_TYPE, line, str(r.viewer_id)) for r in responses for line in r.text.splitlines()]
        try:
            if self._stream is None:
                self._stream = self._connect()
            self._stream.append(events, at_ms=max(r.ts_ms for r in responses))
        except Exception:  # any stream failure, whatever its kind: the landing file takes the lines
            self._stream = None
            self.fallback_rows += len(events)
            if not self._down:
                log.warning("impression log: the event stream failed; served impressions go to the landing "
                            "file until it is back", exc_info=True)
            self._down = True
            return False
        if self._down:
            log.warning("impression log: the event stream is back")
            self._down = False
        self.streamed_rows += len(events)
        return True


@lru_cache(maxsize=1024)
def _quote(text: str) -> str:
    # Sources and surfaces are a handful of enum values: escape each once, not once per row.
    return json.dumps(str(text))


def _json_numbers(values: np.ndarray) -> pa.Array:
    """Shortest round-trip text per number (float32 stays float32-short); NaN/inf -> null."""
    arr = pa.array(values)
    return pc.if_else(pc.is_finite(arr), pc.cast(arr, pa.string()), "null")


def format_lines(r: _Response) -> str:
    """One response -> its JSON lines (with trailing newlines), keys in contract schema order."""
    post_ids = pc.cast(pa.array(np.asarray(r.post_ids, dtype=np.int64)), pa.string())
    positions = pc.cast(pa.array(np.asarray(r.positions, dtype=np.int32)), pa.string())
    sources = pa.array([_quote(s) for s in r.sources], pa.string())
    if len(post_ids) != r.n or len(positions) != r.n or len(sources) != r.n:
        raise ValueError(f"response {r.request_id}: post_ids, positions, sources differ in length")
    if r.scores is None:
        scores: pa.Array | str = "null"
    else:
        scores = _json_numbers(np.asarray(r.scores, dtype=np.float64).reshape(r.n))
    if r.features is None:
        features: pa.Array | str = "null"
    else:
        x = np.asarray(r.features, dtype=np.float32).reshape(r.n, -1)
        f = x.shape[1]
        offsets = pa.array(np.arange(0, r.n * f + 1, f, dtype=np.int32))
        rows = pa.ListArray.from_arrays(offsets, _json_numbers(x.ravel()))
        features = pc.binary_join_element_wise("[", pc.binary_join(rows, ","), "]", "")
    if r.propensities is None:
        propensities: pa.Array | str = "null"
    else:
        propensities = _json_numbers(np.asarray(r.propensities, dtype=np.float64).reshape(r.n))
    model_version = "null" if r.model_version is None else _quote(r.model_version)
    experiment = "null" if r.experiment is None else _quote(r.experiment)
    arm = "null" if r.arm is None else _quote(r.arm)
    parts: list[pa.Array | str] = [
        f'{{"{c.REQUEST_ID}":{_quote(r.request_id)},"{c.VIEWER_ID}":{int(r.viewer_id)},"{c.POST_ID}":',
        post_ids,
        f',"{c.POSITION}":',
        positions,
        f',"{c.SURFACE}":{_quote(r.surface)},"{c.SOURCE}":',
        sources,
        f',"{c.TS}":"{iso_ms(r.ts_ms)}","{c.MODEL_VERSION}":{model_version},"{c.SCORE}":',
        scores,
        f',"{c.FEATURES}":',
        features,
        f',"{c.PROPENSITY}":',
        propensities,
        f',"{c.EXPERIMENT}":{experiment},"{c.ARM}":{arm}}}\n',
    ]
    # Adjacent literals (null score and features) are merged: the kernel takes scalars as well.
    merged: list[pa.Array | str] = []
    for p in parts:
        if isinstance(p, str) and merged and isinstance(merged[-1], str):
            merged[-1] += p
        else:
            merged.append(p)
    return "".join(pc.binary_join_element_wise(*merged, "").to_pylist())


def append_all_or_nothing(path: Path, data: bytes) -> None:
    """Append `data` to `path`, leaving the file as it was if the write fails part-way.

    A half-written line would join the next append's first line into one malformed line (and
    quarantine a good row), so a failed write is cut back to where it started.
    """
    path.parent.mkdir(parents=True, exist_ok=True)
    fd = os.open(path, os.O_WRONLY | os.O_APPEND | os.O_CREAT, 0o644)
    try:
        start = os.lseek(fd, 0, os.SEEK_END)
        view = memoryview(data)
        try:
            while view:
                view = view[os.write(fd, view) :]
        except OSError:
            try:
                os.ftruncate(fd, start)
            except OSError:
                pass
            raise
    finally:
        os.close(fd)


class ImpressionLogWriter:
    """Appends served responses to the serve day's impressions landing file from a background thread.

    Counters (also `stats()`): `logged_rows` handed to `log()`; `written_rows` appended to disk;
    `dropped_rows` lost to a full queue, a closed writer, a response that could not be formatted,
    or a failed write; `write_errors` failed formats/writes; `log_errors` calls to `log()` so
    malformed that not even their rows could be counted.
    Invariant: logged_rows == written_rows + dropped_rows + queued_rows.
    """

    def __init__(
        self,
        landing_dir: Path,
        instance: str = "serving",
        *,
        max_queue_rows: int = 200_000,
        flush_interval_s: float = 0.5,
        append: Callable[[Path, bytes], None] = append_all_or_nothing,
        stream: StreamSink | None = None,
    ) -> None:
        self.root = Path(landing_dir) / LOG_TYPE
        self.stream = stream  # None: lines go to the landing file only
        self.file_name = f"{instance}-{os.getpid()}.jsonl"
        self.max_queue_rows = max_queue_rows
        self.flush_interval_s = flush_interval_s
        self.append = append  # the disk write, on the writer thread (a full or stalled disk fails or waits here)
        self.logged_rows = self.written_rows = self.dropped_rows = 0
        self.write_errors = self.log_errors = 0
        self._queued_rows = 0  # handed to log(), neither written nor dropped yet
        self._lock = threading.Lock()
        self._queue: queue.SimpleQueue = queue.SimpleQueue()
        self._closed = False
        self._warned: set[str] = set()
        self._thread = threading.Thread(target=self._run, name=f"impression-log-{instance}", daemon=True)
        self._thread.start()
        atexit.register(self.close)  # a daemon thread dies at exit: write what is buffered first

    # --- request path ---------------------------------------------------------------------------
    def log(
        self,
        *,
        request_id: str,
        viewer_id: int,
        surface: str,
        ts_ms: int,
        post_ids,
        positions,
        sources,
        scores=None,
        model_version: str | None = None,
        features: np.ndarray | None = None,
        propensities=None,
        experiment: str | None = None,
        arm: str | None = None,
    ) -> bool:
        """Enqueue one served response (n posts); True if queued, False if dropped. Never raises.

        `scores` (n floats) and `features` (n x f float32, NaN = missing) are None when no model
        ranked the response; `propensities` (n floats) are None unless the page was randomised
        (the exploration share). `experiment` and `arm`: the live A/B that routed the request and the
        viewer's arm (None: not served by a routing service). Arrays are kept by reference until
        written: do not mutate them.
        """
        try:
            item = _Response(
                len(post_ids), request_id, viewer_id, surface, ts_ms,
                post_ids, positions, sources, scores, model_version, features, propensities, experiment, arm,
            )
            with self._lock:
                self.logged_rows += item.n
                if self._closed or self._queued_rows + item.n > self.max_queue_rows:
                    self.dropped_rows += item.n
                    full = not self._closed
                else:
                    self._queued_rows += item.n
                    # Under the lock, so nothing is queued behind close()'s stop sentinel.
                    self._queue.put(item)
                    return True
            reason = "queue full" if full else "writer closed"
            self._warn_once(reason, "impression log %s: dropping responses", reason)
            return False
        except Exception:  # noqa: BLE001 - logging never fails a request: counted, warned with its traceback
            with self._lock:
                self.log_errors += 1
            self._warn_once("log_error", "impression log: bad log() call", exc_info=True)
            return False

    # --- control --------------------------------------------------------------------------------
    def flush(self, timeout_s: float = 5.0) -> bool:
        """Block until every response logged before this call is written (or dropped).

        Returns False on timeout or if the writer is closed.
        """
        done = threading.Event()
        with self._lock:
            if self._closed or not self.writing:
                return False
            self._queue.put(done)
        return done.wait(timeout_s)

    def close(self, timeout_s: float = 5.0) -> None:
        """Write what is queued and stop the thread. Idempotent; later `log()` calls drop."""
        with self._lock:
            if self._closed:
                return
            self._closed = True
            self._queue.put(_STOP)
        self._thread.join(timeout_s)
        atexit.unregister(self.close)

    def __enter__(self) -> ImpressionLogWriter:
        return self

    def __exit__(self, *exc) -> None:
        self.close()

    @property
    def writing(self) -> bool:
        """Whether the background writer thread is running (it stops once `close()` has drained it)."""
        return self._thread.is_alive()

    @property
    def queued_rows(self) -> int:
        return self._queued_rows

    def stats(self) -> dict[str, int]:
        with self._lock:
            return {
                "logged_rows": self.logged_rows,
                "written_rows": self.written_rows,
                "dropped_rows": self.dropped_rows,
                "queued_rows": self._queued_rows,
                "write_errors": self.write_errors,
                "log_errors": self.log_errors,
                **({"streamed_rows": self.stream.streamed_rows, "stream_fallback_rows": self.stream.fallback_rows}
                   if self.stream is not None else {}),
            }

    def path_for(self, day: str) -> Path:
        return self.root / day / self.file_name

    # --- writer thread --------------------------------------------------------------------------
    def _run(self) -> None:
        pending: dict[str, list[_Formatted]] = {}  # day -> formatted responses, written at the next flush
        rows: dict[str, int] = {}
        deadline: float | None = None  # when buffered lines must be on disk
        while True:
            timeout = None if deadline is None else max(0.0, deadline - time.monotonic())
            try:
                item = self._queue.get(timeout=timeout)
            except queue.Empty:
                item = None
            if isinstance(item, _Response):
                self._format(item, pending, rows)
                if deadline is None:
                    deadline = time.monotonic() + self.flush_interval_s
            if not isinstance(item, _Response) or time.monotonic() >= deadline:
                self._write(pending, rows)
                deadline = None
            if isinstance(item, threading.Event):
                item.set()
            elif item is _STOP:
                return

    def _format(self, item: _Response, pending: dict[str, list[_Formatted]], rows: dict[str, int]) -> None:
        if item.n == 0:
            return
        try:
            text = format_lines(item)
            day = day_of_ms(item.ts_ms)
        except Exception:
            self._settle(0, item.n, error=True)
            log.exception("impression log: cannot format response %r; dropped", item.request_id)
            return
        pending.setdefault(day, []).append(_Formatted(text, item.viewer_id, item.ts_ms))
        rows[day] = rows.get(day, 0) + item.n

    def _write(self, pending: dict[str, list[_Formatted]], rows: dict[str, int]) -> None:
        for day, responses in pending.items():
            if self.stream is not None and self.stream.append(responses):
                self._settle(rows[day], 0)
                continue
            path = self.path_for(day)  # no stream, or it failed: the landing file, nothing lost
            try:
                self.append(path, "".join(r.text for r in responses).encode())
            except Exception:
                self._settle(0, rows[day], error=True)
                log.exception("impression log: write to %s failed; %d rows dropped", path, rows[day])
            else:
                self._settle(rows[day], 0)
        pending.clear()
        rows.clear()

    def _settle(self, written: int, dropped: int, error: bool = False) -> None:
        with self._lock:
            self.written_rows += written
            self.dropped_rows += dropped
            self.write_errors += int(error)
            self._queued_rows -= written + dropped

    def _warn_once(self, key: str, msg: str, *args, exc_info: bool = False) -> None:
        # Warnings on the request path: once per kind, so a burst of drops does not flood the log.
        if key not in self._warned:
            self._warned.add(key)
            log.warning(msg + " (further ones only counted)", *args, exc_info=exc_info)
