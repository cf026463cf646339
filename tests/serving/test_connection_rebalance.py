"""ConnectionRebalancer (serving.connection_rebalance): a request arriving while its worker serves
another is answered with `Connection: close` (at most once every `every_s`), so the client's next
request opens a connection an idle worker can take."""

from __future__ import annotations

import asyncio

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


async def _request(middleware, answers: list) -> list:
    sent: list = []

    async def receive():
        return {"type": "http.request", "body": b"{}", "more_body": False}

    async def send(message):
        sent.append(message)

    await middleware(dict(SCOPE), receive, send)
    answers.append(sent)
    return sent


def _closes(sent: list) -> bool:
    return CLOSE in sent[0]["headers"]


def test_a_request_arriving_while_the_worker_is_busy_closes_its_connection_once_per_interval():
    async def scenario():
        app, clock = HeldApp(), Clock()
        rebalancer = ConnectionRebalancer(app, lambda: 1.0, clock)
        answers: list = []
        first = asyncio.create_task(_request(rebalancer, answers))
        await app.reached(1)
        second = asyncio.create_task(_request(rebalancer, answers))
        third = asyncio.create_task(_request(rebalancer, answers))
        await app.reached(3)
        assert rebalancer.in_flight == 3
        for release in app.release:
            release.set()
        first, second, third = await first, await second, await third
        assert not _closes(first)  # the worker was idle when it came
        assert _closes(second)  # the worker was busy: its connection should move
        assert not _closes(third)  # busy too, but within the interval: one close per second at most
        assert rebalancer.in_flight == 0
        assert second[0]["headers"][0] == (b"content-type", b"application/json")  # the app's headers kept

        clock.now += 1.0  # an interval later, a busy arrival closes again
        first = asyncio.create_task(_request(rebalancer, answers))
        await app.reached(4)
        second = asyncio.create_task(_request(rebalancer, answers))
        await app.reached(5)
        app.release[3].set()
        app.release[4].set()
        assert not _closes(await first) and _closes(await second)

    asyncio.run(scenario())


def test_a_request_on_an_idle_worker_keeps_its_connection_and_zero_disables():
    async def scenario():
        app = HeldApp()
        rebalancer = ConnectionRebalancer(app, lambda: 0.0, Clock())
        answers: list = []
        first = asyncio.create_task(_request(rebalancer, answers))
        await app.reached(1)
        second = asyncio.create_task(_request(rebalancer, answers))
        await app.reached(2)
        for release in app.release:
            release.set()
        assert not _closes(await first) and not _closes(await second)  # every_s 0: never

    asyncio.run(scenario())


def test_without_an_app_to_ask_connections_are_left_alone():
    async def scenario():
        app = HeldApp()

        def no_app() -> float:
            raise RuntimeError("not running yet")

        rebalancer = ConnectionRebalancer(app, no_app, Clock())
        answers: list = []
        first = asyncio.create_task(_request(rebalancer, answers))
        await app.reached(1)
        second = asyncio.create_task(_request(rebalancer, answers))
        await app.reached(2)
        for release in app.release:
            release.set()
        assert not _closes(await first) and not _closes(await second)

    asyncio.run(scenario())
