"""The stream archive sensor lands what the event stream holds into the landing folder on each
tick, and skips, saying why, when no stream server answers."""

from __future__ import annotations

import json

import dagster as dg
import pytest

from data.redis_server import EmbeddedRedis
from data.stream.entries import Event
from data.stream.valkey_stream import ValkeyStream
from pipelines.defs.ingest.resources import StreamResource
from pipelines.defs.ingest.sensors import stream_archive_sensor
from pipelines.resources import WorkspaceResource

pytestmark = pytest.mark.integration  # a durable Valkey server of its own


def tick(stream: StreamResource, workspace: WorkspaceResource) -> str:
    with dg.build_sensor_context(resources={"stream": stream, "workspace": workspace}) as context:
        data = stream_archive_sensor.evaluate_tick(context)
    assert not data.run_requests
    return data.skip_message


def test_each_tick_lands_the_stream_and_a_missing_server_is_a_skip(tmp_path):
    landing = tmp_path / "landing"
    workspace = WorkspaceResource(landing_dir=str(landing), lake_dir=str(tmp_path / "lake"))
    with EmbeddedRedis(data_dir=tmp_path / "stream", durable=True) as server:
        resource = StreamResource(url=server.url, partitions=2)
        ValkeyStream.connect(server.url, 2).append(
            [Event("posts", json.dumps({"post_id": i}), str(i)) for i in range(5)])
        assert tick(resource, workspace).startswith("archived 5 entries")
        assert sum(len(f.read_text().splitlines()) for f in landing.glob("posts/*/stream-*.jsonl")) == 5
        assert tick(resource, workspace).startswith("archived 0 entries")
        url = server.url
    assert tick(StreamResource(url=url, partitions=2), workspace).startswith(f"no event stream at {url}")
