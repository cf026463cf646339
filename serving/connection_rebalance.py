"""ConnectionRebalancer: keep-alive connections move from a busy worker to an idle one.

The service's worker processes accept connections from one shared socket, whichever is quickest
first, and a keep-alive connection stays with the worker that accepted it. A client holding few
connections (a feed service's pool, a balancer's upstream connections) can so have two on one
worker while the other idles: their requests queue for that worker ([admission] queue_ms) while a
core stands free. bench-serving saw it in 2 of 3 blocks at two in flight.

So a request that arrives while its worker is already serving another is answered with
`Connection: close`, at most once every `every_s` per worker: the client's next request opens a
new connection, which an idle worker is the likeliest to accept (the busy worker's event loop
waits for the GIL its request holds). gRPC's MAX_CONNECTION_AGE and Envoy's
max_requests_per_connection rebalance long-lived connections the same way, by age rather than by
need. A pure ASGI middleware, like serving.api_guard; it counts the requests of its own worker
(one event loop: no lock).
"""

from __future__ import annotations

import math
import time
from collections.abc import Callable

CLOSE = (b"connection", b"close")


class ConnectionRebalancer:
    def __init__(self, app, every_s: Callable[[], float], clock: Callable[[], float] = time.monotonic):
        self.app = app
        self.every_s = every_s  # 0 or less: never close (read per busy arrival: the app owns the config)
        self.clock = clock
        self.in_flight = 0
        self._last_close = -math.inf

    async def __call__(self, scope, receive, send) -> None:
        if scope["type"] != "http":
            await self.app(scope, receive, send)
            return
        close = self.in_flight > 0 and self._due()
        self.in_flight += 1
        try:
            await self.app(scope, receive, _closing(send) if close else send)
        finally:
            self.in_flight -= 1

    def _due(self) -> bool:
        try:
            every = self.every_s()
        except Exception:  # noqa: BLE001 - no app yet (starting, stopping): leave connections alone
            return False
        now = self.clock()
        if every <= 0 or now - self._last_close < every:
            return False
        self._last_close = now
        return True


def _closing(send):
    """`send`, with `Connection: close` added to the response's headers."""

    async def closing_send(message) -> None:
        if message["type"] == "http.response.start":
            message = {**message, "headers": [*message.get("headers", ()), CLOSE]}
        await send(message)

    return closing_send
