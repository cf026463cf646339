"""Served impressions onto the event stream: the archiver lands exactly the lines the landing file
would have held, in the serve day's folder; with the stream down, the file takes them, nothing is
lost, and the stream is used again once it is back."""

from __future__ import annotations

import os
from collections import Counter
from datetime import UTC, datetime
from pathlib import Path

import numpy as np
import pytest

from data.redis_server import EmbeddedRedis
from data.stream.archiver import StreamArchiver
from data.stream.valkey_stream import ValkeyStream
from serving.impression_log import ImpressionLogWriter, StreamSink

pytestmark = pytest.mark.integration  # a durable Valkey server of its own


def ms(iso: str) -> int:
    return int(datetime.fromisoformat(iso).replace(tzinfo=UTC).timestamp() * 1000)


RESPONSES = [
    dict(request_id="req-a", viewer_id=1002, surface="home", ts_ms=ms("2026-10-02T08:15:30.123"),
         post_ids=np.array([5001, 5002]), positions=np.array([0, 1]), sources=["in_network", "trending"],
         scores=np.array([0.87, -1.25]), model_version="ranker-7",
         features=np.array([[0.1, np.nan], [1e-7, -2.5]], np.float32)),
    dict(request_id="req-b", viewer_id=1003, surface="explore", ts_ms=ms("2026-10-02T09:00:00.000"),
         post_ids=[6001], positions=[0], sources=["explore_popular"]),
    dict(request_id="req-c", viewer_id=1003, surface="explore", ts_ms=ms("2026-10-03T00:00:00.005"),
         post_ids=[7001], positions=[0], sources=["popular"]),
]


def lines_in(landing: Path, pattern: str) -> Counter:
    return Counter((f.parent.name, line) for f in landing.glob(f"impressions/*/{pattern}")
                   for line in f.read_text().splitlines())


def serve(landing: Path, stream: StreamSink | None) -> ImpressionLogWriter:
    writer = ImpressionLogWriter(landing, "t", flush_interval_s=0.01, stream=stream)
    for response in RESPONSES:
        assert writer.log(**response)
    assert writer.flush()
    writer.close()
    return writer


@pytest.fixture
def server(tmp_path):
    with EmbeddedRedis(data_dir=tmp_path / "stream", durable=True) as s:
        yield s


def test_streamed_impressions_land_as_the_lines_the_file_would_hold(server, tmp_path):
    expected = lines_in(serve(tmp_path / "file", None).root.parent, "*.jsonl")
    sink = StreamSink(lambda: ValkeyStream.connect(server.url, partitions=2))
    writer = serve(tmp_path / "landing", sink)
    assert not list((tmp_path / "landing").glob("impressions/*/*.jsonl"))  # nothing in a file yet
    assert writer.stats()["streamed_rows"] == 4 and writer.stats()["written_rows"] == 4
    StreamArchiver(ValkeyStream.connect(server.url, partitions=2), tmp_path / "landing").archive()
    assert lines_in(tmp_path / "landing", "stream-*.jsonl") == expected  # same lines, same serve days


def test_with_the_stream_down_the_landing_file_takes_the_lines_until_it_is_back(server, tmp_path):
    landing = tmp_path / "landing"
    sink = StreamSink(lambda: ValkeyStream.connect(server.url, partitions=2, timeout_s=2.0))
    server.kill()
    writer = serve(landing, sink)
    stats = writer.stats()
    assert stats["stream_fallback_rows"] == 4 and stats["written_rows"] == 4 and stats["dropped_rows"] == 0
    in_files = lines_in(landing, f"t-{os.getpid()}.jsonl")
    assert sum(in_files.values()) == 4

    server.start()
    serve(landing, sink)
    assert sink.streamed_rows == 4  # back on the stream, reconnected by itself
    StreamArchiver(ValkeyStream.connect(server.url, partitions=2), landing).archive()
    assert lines_in(landing, "stream-*.jsonl") == in_files  # the same served lines, once each way
