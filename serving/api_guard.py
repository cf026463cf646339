"""ApiGuardMiddleware: who may call the ranking service, and what a request may be, decided before
BentoML reads a byte of the body or the service runs a stage.

    no or wrong bearer token          401  every path but the open ones (probes and /metrics by
                                           default; serving/config.toml [api])
    a body that is not application/json   415  (a form-encoded or multipart body would be coerced
                                           into the typed fields, strings and all)
    a body over api.max_body_bytes    413  by its Content-Length, or counted as it streams in

It also stamps when the request arrived (`scope[ARRIVED]`, before the body is read or a worker
thread is free): the request's budget counts from there (serving.admission).

Service-to-service authentication: the caller (the feed service) holds the token
(data.settings.serving_secrets: LOUPE_API_TOKEN, or the workspace's token file); it is compared in
constant time. A pure ASGI middleware added with BentoML's `Service.add_asgi_middleware`; it reads
the settings of the app the service runs (`ApiAccess`, built with the RankingApp) on each request.
"""

from __future__ import annotations

import hmac
import time
from collections.abc import Callable
from dataclasses import dataclass, field

from starlette.datastructures import Headers
from starlette.responses import JSONResponse

from serving.config import ApiConfig

PROBES = frozenset({"/livez", "/healthz", "/readyz"})
METRICS = frozenset({"/metrics"})
WITH_BODY = frozenset({"POST", "PUT", "PATCH"})
JSON = "application/json"
ARRIVED = "loupe.arrived"  # time.perf_counter() when the request reached the middleware


class BadRequest(ValueError):
    """The caller's mistake (HTTP 400), with a message that says what to fix."""


@dataclass(frozen=True)
class ApiAccess:
    token: str = field(repr=False)
    open_paths: frozenset[str] = PROBES | METRICS
    max_body_bytes: int = ApiConfig().max_body_bytes

    @classmethod
    def from_config(cls, token: str, api: ApiConfig) -> ApiAccess:
        if not token:
            raise ValueError("the ranking service needs an API token (data.settings.serving_secrets)")
        open_paths = (PROBES if api.probes_open else frozenset()) | (METRICS if api.metrics_open else frozenset())
        return cls(token, open_paths, api.max_body_bytes)

    def authorized(self, header: str | None) -> bool:
        scheme, _, value = (header or "").partition(" ")
        return scheme.lower() == "bearer" and hmac.compare_digest(value.strip().encode(), self.token.encode())


def _error(status: int, message: str, headers: dict[str, str] | None = None) -> JSONResponse:
    return JSONResponse({"error": message}, status_code=status, headers=headers)


class ApiGuardMiddleware:
    def __init__(self, app, access: Callable[[], ApiAccess]):
        self.app, self.access = app, access

    async def __call__(self, scope, receive, send) -> None:
        if scope["type"] != "http":
            await self.app(scope, receive, send)
            return
        scope[ARRIVED] = time.perf_counter()
        try:
            access = self.access()
        except Exception:  # noqa: BLE001 - no app yet (starting, or stopping): refuse, never let through
            await _error(503, "the service is not running yet")(scope, receive, send)
            return
        headers = Headers(scope=scope)
        if scope["path"] not in access.open_paths and not access.authorized(headers.get("authorization")):
            await _error(401, "send the service's token: Authorization: Bearer <token>",
                         {"WWW-Authenticate": 'Bearer realm="loupe-ranking"'})(scope, receive, send)
            return
        if scope["method"] not in WITH_BODY:
            await self.app(scope, receive, send)
            return
        media_type = headers.get("content-type", "").split(";")[0].strip().lower()
        if media_type != JSON:
            await _error(415, f"send the body as {JSON} (Content-Type: {JSON})")(scope, receive, send)
            return
        too_big = _error(413, f"request body over {access.max_body_bytes} bytes")
        declared = headers.get("content-length")
        if declared is not None and (not declared.isdigit() or int(declared) > access.max_body_bytes):
            await (too_big if declared.isdigit() else _error(400, "bad Content-Length"))(scope, receive, send)
            return
        chunks, size, more = [], 0, True
        while more:
            message = await receive()
            if message["type"] != "http.request":  # the client went away
                return
            chunk = message.get("body", b"")
            size += len(chunk)
            if size > access.max_body_bytes:
                await too_big(scope, receive, send)
                return
            chunks.append(chunk)
            more = message.get("more_body", False)
        await self.app(scope, _replay(b"".join(chunks), receive), send)


def _replay(body: bytes, receive):
    """A `receive` that hands over the body read already, then whatever the client sends next."""
    sent = False

    async def replay():
        nonlocal sent
        if not sent:
            sent = True
            return {"type": "http.request", "body": body, "more_body": False}
        return await receive()

    return replay
