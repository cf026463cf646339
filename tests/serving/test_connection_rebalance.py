"""ConnectionRebalancer (serving.connection_rebalance): a request arriving while its worker serves
another is answered with `Connection: close` (at most once every `every_s`), so the client's next
request opens a connection an idle worker can take."""

from __future__ import annotations

import asyncio

import pytest

from serving.connection_rebalance import CLOSE, ConnectionRebalancer

SCOPE = {"type": "http", "path": "/v1/feed/home", "method": "POST", "headers": []}


class Clock:
    def __init__(self) -> None:
        self.now = 100.0

    def __call__(self) -> float:
        return self.now


class HeldApp:
    """An ASGI app whose requests answer only when released, in the order they arrived."""

    def __init__(self) -> None:
        self.release: list[asyncio.Event] = []
        self._arrival = asyncio.Event()

    async def reached(self, n: int) -> None:
        """Wait until `n` requests in all have reached the app."""
        while len(self.release) < n:
            self._arrival.clear()
            await self._arrival.wait()

    async def __call__(self, scope, receive, send) -> None:
        release = asyncio.Event()
        self.release.append(release)
        self._arrival.set()
        await release.wait()
        await send({"type": "http.response.start", "status": 200, "headers": [(b"content-type", b"application/json")]})
        await send({"type": "http.response.body", "body": b"{}"})


async def _request(middleware) -> list:
    """One request through `middleware`: the messages its response sent."""
    sent: list = []

    async def receive():
        return {"type": "http.request", "body": b"{}", "more_body": False}

    async def send(message):
        sent.append(message)

    await middleware(dict(SCOPE), receive, send)
    return sent


def _closes(sent: list) -> bool:
    return CLOSE in sent[0]["headers"]


async def _overlapping(app: HeldApp, rebalancer: ConnectionRebalancer, n: int) -> list[list]:
    """`n` requests, each arriving while the ones before are still in the app; then all answered."""
    before = len(app.release)
    tasks = []
    for k in range(n):
        tasks.append(asyncio.create_task(_request(rebalancer)))
        await app.reached(before + k + 1)
    assert rebalancer.in_flight == n
    for release in app.release[before:]:
        release.set()
    return [await t for t in tasks]


def test_a_request_arriving_while_the_worker_is_busy_closes_its_connection_once_per_interval():
    async def scenario():
        app, clock = HeldApp(), Clock()
        rebalancer = ConnectionRebalancer(app, lambda: 1.0, clock)
        first, second, third = await _overlapping(app, rebalancer, 3)
        assert not _closes(first)  # the worker was idle when it came
        assert _closes(second)  # the worker was busy: its connection should move
        assert not _closes(third)  # busy too, but within the interval: one close per second at most
        assert rebalancer.in_flight == 0
        assert second[0]["headers"][0] == (b"content-type", b"application/json")  # the app's headers kept

        clock.now += 1.0  # an interval later, a busy arrival closes again
        first, second = await _overlapping(app, rebalancer, 2)
        assert not _closes(first) and _closes(second)

    asyncio.run(scenario())


def _no_app() -> float:
    raise RuntimeError("not running yet")


@pytest.mark.parametrize("every_s", [lambda: 0.0, _no_app], ids=["zero disables", "no app yet"])
def test_connections_are_left_alone_when_rebalancing_is_off_or_unknown(every_s):
    async def scenario():
        app = HeldApp()
        first, second = await _overlapping(app, ConnectionRebalancer(app, every_s, Clock()), 2)
        assert not _closes(first) and not _closes(second)

    asyncio.run(scenario())
