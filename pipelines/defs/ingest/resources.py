"""The ingestion domain's own resource: the event stream, which the archiver sensor lands into the
landing folder (data/stream, docs/event_stream.md)."""

from __future__ import annotations

import dagster as dg

from data.settings import Settings
from data.stream.valkey_stream import ValkeyStream


class StreamResource(dg.ConfigurableResource):
    """The event stream's server: LOUPE_STREAM_URL, else the embedded one `make run` starts."""

    url: str
    partitions: int = Settings.model_fields["stream_partitions"].default

    def stream(self, timeout_s: float | None = 10.0) -> ValkeyStream:
        return ValkeyStream.connect(self.url, self.partitions, timeout_s=timeout_s)


def ingest_resources(settings: Settings) -> dict[str, dg.ConfigurableResource]:
    return {"stream": StreamResource(url=settings.stream_endpoint, partitions=settings.stream_partitions)}
