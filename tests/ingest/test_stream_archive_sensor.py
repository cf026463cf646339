"""The stream archive sensor lands what the event stream holds into the landing folder on each
tick, observes the stream's backlog per consumer group and flags one that keeps growing, and skips,
saying why, when no stream server answers."""

from __future__ import annotations

import json

import dagster as dg
import pytest

from data.redis_server import EmbeddedRedis
from data.stream.backlog import GROWING_TICKS
from data.stream.entries import Event
from data.stream.valkey_stream import ValkeyStream
from pipelines.defs.ingest.resources import StreamResource
from pipelines.defs.ingest.sensors import stream_archive_sensor
from pipelines.resources import WorkspaceResource

pytestmark = pytest.mark.integration  # a durable Valkey server of its own


def tick(stream: StreamResource, workspace: WorkspaceResource, cursor: str | None = None):
    with dg.build_sensor_context(resources={"stream": stream, "workspace": workspace}, cursor=cursor) as context:
        data = stream_archive_sensor.evaluate_tick(context)
    assert not data.run_requests
    return data


def posts(n: int, start: int = 0) -> list[Event]:
    return [Event("posts", json.dumps({"post_id": i}), str(i)) for i in range(start, start + n)]


def test_each_tick_lands_the_stream_and_a_missing_server_is_a_skip(tmp_path):
    landing = tmp_path / "landing"
    workspace = WorkspaceResource(landing_dir=str(landing), lake_dir=str(tmp_path / "lake"))
    with EmbeddedRedis(data_dir=tmp_path / "stream", durable=True) as server:
        resource = StreamResource(url=server.url, partitions=2)
        ValkeyStream.connect(server.url, 2).append(posts(5))
        assert tick(resource, workspace).skip_message.startswith("archived 5 entries")
        assert sum(len(f.read_text().splitlines()) for f in landing.glob("posts/*/stream-*.jsonl")) == 5
        assert tick(resource, workspace).skip_message.startswith("archived 0 entries")
        url = server.url
    assert tick(StreamResource(url=url, partitions=2), workspace).skip_message.startswith(
        f"no event stream at {url}")


def test_a_consumer_group_whose_backlog_keeps_growing_is_flagged(tmp_path):
    workspace = WorkspaceResource(landing_dir=str(tmp_path / "landing"), lake_dir=str(tmp_path / "lake"))
    with EmbeddedRedis(data_dir=tmp_path / "stream", durable=True) as server:
        resource, stream = StreamResource(url=server.url, partitions=2), ValkeyStream.connect(server.url, 2)
        stream.create_group("slow")  # a consumer group nobody reads for
        stream.create_group("keeping-up")
        cursor, flagged = None, []
        for i in range(GROWING_TICKS + 1):
            stream.append(posts(3, start=3 * i))
            stream.ack("keeping-up", stream.read("keeping-up", "w", count=100))
            data = tick(resource, workspace, cursor)
            cursor = data.cursor
            [observation] = data.asset_events
            flagged.append(observation.metadata["growing"].value)
        assert flagged[:-1] == [[]] * GROWING_TICKS and flagged[-1] == ["slow"]
        assert observation.metadata["backlog"].value == {
            "slow": {"undelivered": 18, "pending": 0}, "keeping-up": {"undelivered": 0, "pending": 0}}
        assert "backlog growing: slow" in data.skip_message
        assert observation.metadata["entries"].value == 18  # archived, but kept: "slow" still needs them
