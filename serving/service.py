"""Loupe's ranking service: one BentoML service class, typed and validated versioned routes.

    POST /v1/feed/home     {viewer_id, limit (1..100), cursor?}   ranked Home feed
    POST /v1/feed/explore  {viewer_id, limit (1..100), cursor?}   ranked Explore
    POST /v1/rank          {viewer_id, surface, post_ids}         scores for supplied candidates
    POST /v1/events        {events: [engagement, ...]}            client engagements onto the event stream
    POST /v1/blocks        {changes: [block or mute, ...]}        a viewer's blocks and mutes onto the stream
    POST /v1/search        {viewer_id, query, limit (1..100)}     posts by hashtags and captions, privacy-filtered
    POST /v1/stories/tray  {viewer_id, limit? (1..200)}           followed accounts with unseen live stories
    POST /v1/stories/seen  {viewer_id, story_ids}                 the stories a viewer saw (leave the tray)
    GET  /healthz /livez /readyz /metrics                         BentoML's own probes + Prometheus

An overloaded worker answers from a cheap path, never with an empty page or an error
(serving.admission; the response says `degraded: overload`).

Every route but the probes and /metrics wants `Authorization: Bearer <token>` (serving.api_guard,
which also refuses bodies that are not JSON or too large). Run: `bentoml serve
serving.service:RankingService` (python -m serving serve). Everything else lives in
serving.app.RankingApp; this class only validates, delegates and maps errors to 4xx.

The feed and rank routes answer in their response model's schema (FeedResponse, RankResponse: the
OpenAPI document), serialised by orjson straight from what the app returns: building the pydantic
model of a page and serialising it again cost ~1 ms a request for a dict the app already typed.
"""

from __future__ import annotations

import logging
from collections.abc import Callable
from typing import TYPE_CHECKING, Annotated, Any, Literal

import bentoml
import orjson
from pydantic import BaseModel, Field
from starlette.responses import Response

from candidate_gen.search.search_terms import EmptyQuery
from data.contracts import BLOCKS, ENGAGEMENTS
from data.quiet import filter_third_party_warnings
from data.settings import get_settings
from serving.api_guard import ARRIVED, ApiAccess, ApiGuardMiddleware, BadRequest
from serving.connection_rebalance import ConnectionRebalancer
from serving.event_intake import StreamUnavailable
from serving.metrics import OWN_PREFIX, own_metrics
from serving.stories.story_tray import StoryStateUnavailable

if TYPE_CHECKING:
    from serving.app import RankingApp

logger = logging.getLogger(__name__)

INT64_MAX = 2**63 - 1  # ids are int64 everywhere (data/contracts.py)
ViewerId = Annotated[int, Field(strict=True, ge=0, le=INT64_MAX, description="the user asking for the feed")]
Limit = Annotated[int, Field(strict=True, ge=1, le=100, description="posts on the page")]
Cursor = Annotated[str | None, Field(max_length=200, description="next_cursor of the previous page")]
PostIds = Annotated[list[Annotated[int, Field(strict=True, ge=0, le=INT64_MAX)]], Field(min_length=1, max_length=2000)]


class FeedItem(BaseModel):
    post_id: int
    author_id: int
    score: float
    source: str
    position: int
    interstitial: str | None = Field(None, description="the content label(s) the client covers the post with "
                                     "(an `interstitial` outcome, docs/candidates.md \"Integrity\"); null: none")


class FeedResponse(BaseModel):
    request_id: str
    surface: str
    viewer_id: int
    experiment: str | None = Field(None, description="the live A/B this request was routed by; null: none runs")
    arm: str = Field("control", description="the viewer's arm (control | treatment), by a hash of the experiment's "
                     "salt and the viewer id: the same for a viewer on every request; control when no experiment runs")
    model_version: str = Field(description="registered model:version that ordered the page, or heuristic")
    scorer: str = Field(description="compiled | lightgbm | heuristic | chronological")
    heuristic_reason: str | None = Field(
        None, description="why the heuristic scored: no_champion (no model passed the promotion gate yet), "
        "registry_unreachable, overload (the cheap path answered an overloaded worker), no_candidates "
        "(an empty page: nothing was left to rank; `filtered` says what was removed), experiment_arm (the "
        "viewer's arm of the experiment serves the heuristic), or the score stage's degradation; null when a "
        "model scored")
    items: list[FeedItem]
    degraded: list[str] = Field(description="stages that fell back (sources.<name>, filters, hydrate, score, "
                                "registry, experiment: the treatment's model is not served, the control's is, ...)")
    degraded_reasons: dict[str, str]
    candidates: dict[str, int] = Field(description="candidates per source, before dedupe and filters")
    filtered: dict[str, int] = Field(description="candidates removed, per reason")
    stage_ms: dict[str, float]
    next_cursor: str | None = None


class RejectedEvent(BaseModel):
    index: int = Field(description="its place in the batch (0-based)")
    event_id: str | None
    reason: str = Field(description="the first rule it failed, as ingestion names it (docs/log_contracts.md)")


class EventsResponse(BaseModel):
    accepted: int = Field(description="events appended to the stream (on the server's disk)")
    duplicates: int = Field(description="events whose event_id was accepted before: not appended again")
    rejected: list[RejectedEvent] = Field(description="events that failed a rule (status 422 when any); "
                                          "the others of the batch are accepted all the same")
    error: str | None = Field(None, description="why the batch was not taken (status 503: the event stream is "
                              "down or absent); retry it, what was appended comes back as duplicates")


class RankResponse(BaseModel):
    request_id: str
    surface: str
    viewer_id: int
    experiment: str | None = None
    arm: str = "control"
    model_version: str
    scorer: str
    heuristic_reason: str | None = None
    items: list[FeedItem]
    degraded: list[str]
    degraded_reasons: dict[str, str]
    candidates: dict[str, int]
    not_rankable: int = Field(description="supplied posts left out (unknown, or not for this viewer: which "
                              "and why is not said, it would tell who blocked or muted whom)")
    stage_ms: dict[str, float]


class SearchItem(BaseModel):
    post_id: int
    author_id: int
    score: float
    position: int
    interstitial: str | None = Field(None, description="the content label(s) the client covers the post with "
                                     "(docs/candidates.md \"Integrity\"); null: none")


class SearchResponse(BaseModel):
    request_id: str | None = None
    viewer_id: int
    items: list[SearchItem] = Field(description="matching posts the viewer may see, best first (a post the "
                                    "viewer may not see is absent: neither counted nor named)")
    degraded: list[str] = Field(default_factory=list, description="steps that fell back: index (missing or "
                                "unreadable: no items), filters (privacy state unreadable: nothing unverified is "
                                "served), relationships (ranked without follows and affinity)")
    degraded_reasons: dict[str, str] = Field(default_factory=dict)
    total_ms: float = 0.0
    error: str | None = Field(None, description="why the query was refused (status 422: it holds no word)")


SearchQuery = Annotated[str, Field(strict=True, max_length=256, description="words to find in hashtags and "
                                   "captions (`#tag` and `tag` alike), all of them required; signs are "
                                   "separators, never query syntax")]


class TrayStory(BaseModel):
    story_id: int
    created_at_ms: int = Field(description="live until created_at_ms + 86,400,000 (24 h), exclusive")


class TrayItem(BaseModel):
    author_id: int
    score: float
    position: int
    unseen: int = Field(description="the account's unseen live stories")
    latest_at_ms: int = Field(description="when its newest unseen story was posted")
    stories: list[TrayStory] = Field(description="its unseen live stories, oldest first (the order they play in)")


class TrayResponse(BaseModel):
    request_id: str | None = None
    viewer_id: int
    served_at_ms: int = Field(description="the service clock's time every story was checked live at, as the "
                              "answer left: each one's created_at_ms + 24 h is later")
    items: list[TrayItem] = Field(description="followed accounts with unseen live stories the viewer may see, "
                                  "best first (an account the viewer may not see is absent: neither counted nor named)")
    degraded: list[str] = Field(default_factory=list, description="steps that fell back: stories (state unreadable: "
                                "an empty tray), filters (privacy state unreadable: nothing unverified is served)")
    degraded_reasons: dict[str, str] = Field(default_factory=dict)
    total_ms: float = 0.0


class SeenResponse(BaseModel):
    recorded: int = Field(description="distinct story ids recorded as seen")
    error: str | None = Field(None, description="why they were not recorded (status 503): retry")


TrayLimit = Annotated[int | None, Field(strict=True, ge=1, le=200, description="accounts in the tray; "
                                        "null: [stories] tray_limit")]
StoryIds = Annotated[list[Annotated[int, Field(strict=True, ge=0, le=INT64_MAX)]], Field(min_length=1, max_length=500)]


def default_app() -> RankingApp:
    # Imported here, in the worker: `bentoml serve` imports this module in its own process only to
    # read the service's definition, and serving.app's imports (Feast, LightGBM, MLflow) took ~15 s.
    from serving.app import RankingApp

    filter_third_party_warnings()  # once Feast is imported: data/quiet.py says why
    return RankingApp.from_settings(get_settings())


class RankingEndpoints:
    """The routes, over the app `app_factory` builds in each worker (`ranking_service` binds it)."""

    app_factory: Callable[[], RankingApp] = staticmethod(default_app)

    def __init__(self) -> None:
        self.app = type(self).app_factory()

    def __is_ready__(self) -> bool:
        return self.app.ready()

    @bentoml.api(route="/v1/feed/home")
    def home(self, ctx: bentoml.Context, viewer_id: ViewerId, limit: Limit = 20, cursor: Cursor = None) -> FeedResponse:
        return json_response(self._call(self.app.feed, "home", viewer_id, limit, cursor, arrived(ctx)))

    @bentoml.api(route="/v1/feed/explore")
    def explore(self, ctx: bentoml.Context, viewer_id: ViewerId, limit: Limit = 20,
                cursor: Cursor = None) -> FeedResponse:
        return json_response(self._call(self.app.feed, "explore", viewer_id, limit, cursor, arrived(ctx)))

    @bentoml.api(route="/v1/rank")
    def rank(self, ctx: bentoml.Context, viewer_id: ViewerId, surface: Literal["home", "explore"],
             post_ids: PostIds) -> RankResponse:
        return json_response(self._call(self.app.rank, surface, viewer_id, post_ids, arrived(ctx)))

    @bentoml.api(route="/v1/events")
    def events(self, ctx: bentoml.Context, events: Annotated[list[Any], Field(min_length=1)]) -> EventsResponse:
        return self._intake(ctx, events, ENGAGEMENTS.name)

    @bentoml.api(route="/v1/blocks")
    def blocks(self, ctx: bentoml.Context, changes: Annotated[list[Any], Field(min_length=1)]) -> EventsResponse:
        return self._intake(ctx, changes, BLOCKS.name)

    @bentoml.api(route="/v1/search")
    def search(self, ctx: bentoml.Context, viewer_id: ViewerId, query: SearchQuery,
               limit: Limit = 20) -> SearchResponse:
        try:
            return SearchResponse(**self._call(self.app.search, viewer_id, query, limit, arrived(ctx)))
        except EmptyQuery as exc:
            ctx.response.status_code = 422
            return SearchResponse(viewer_id=viewer_id, items=[], error=str(exc))

    @bentoml.api(route="/v1/stories/tray")
    def stories_tray(self, ctx: bentoml.Context, viewer_id: ViewerId, limit: TrayLimit = None) -> TrayResponse:
        return json_response(self._call(self.app.stories_tray, viewer_id, limit, arrived(ctx)))

    @bentoml.api(route="/v1/stories/seen")
    def stories_seen(self, ctx: bentoml.Context, viewer_id: ViewerId, story_ids: StoryIds) -> SeenResponse:
        try:
            return SeenResponse(recorded=self._call(self.app.stories_seen, viewer_id, story_ids))
        except StoryStateUnavailable as exc:
            ctx.response.status_code = 503
            ctx.response.headers["retry-after"] = "1"
            return SeenResponse(recorded=0, error=str(exc))

    def _intake(self, ctx: bentoml.Context, events: list[Any], log_name: str) -> EventsResponse:
        try:
            result = self._call(self.app.events, events, log_name)
        except StreamUnavailable as exc:  # said in the body: BentoML's own 503 hides the message
            ctx.response.status_code = 503
            ctx.response.headers["retry-after"] = "1"
            return EventsResponse(accepted=0, duplicates=0, rejected=[], error=str(exc))
        if result.rejected:
            ctx.response.status_code = 422
        return EventsResponse(accepted=result.accepted, duplicates=result.duplicates, rejected=result.rejected)

    @staticmethod
    def _call(handler, *args):
        try:
            return handler(*args)
        except BadRequest as exc:
            raise bentoml.exceptions.InvalidArgument(str(exc)) from None

    def __metrics__(self, content: str) -> str:
        """BentoML's /metrics collects every worker's metric files in multiprocess mode; where ours
        are not among them (an app run in-process, or another multiprocess directory: Feast sets
        its own at import), this process's registry is added."""
        return content if OWN_PREFIX in content else content + own_metrics()

    @bentoml.on_shutdown
    def shutdown(self) -> None:
        self.app.close()


def json_response(body: dict[str, Any]) -> Response:
    """The app's answer as the route's JSON body (BentoML passes a Response through as it is)."""
    return Response(orjson.dumps(body), media_type="application/json")


def arrived(ctx: bentoml.Context) -> float | None:
    """When the request reached the server (stamped by ApiGuardMiddleware), so the budget counts
    the wait for a worker thread too."""
    return ctx.request.scope.get(ARRIVED)


def current_access() -> ApiAccess:
    """The access settings of the app this worker's service runs (raises before it runs)."""
    return bentoml.get_current_service().app.access


def rebalance_every_s() -> float:
    """[admission] rebalance_every_s of the app this worker's service runs (raises before it runs)."""
    return bentoml.get_current_service().app.config.admission.rebalance_every_s


def ranking_service(app_factory: Callable[[], RankingApp] = default_app) -> bentoml.Service:
    """The BentoML service over the app `app_factory` builds in each worker (tests pass one wired to
    their own Redis and registry). One worker process per core: the stages are Python, so one
    process runs one request at a time."""
    endpoints = type("RankingService", (RankingEndpoints,), {"app_factory": staticmethod(app_factory),
                                                             "__module__": __name__})
    service = bentoml.service(name="loupe-ranking", workers=get_settings().serving_workers, threads=8,
                              traffic={"timeout": 10})(endpoints)
    service.add_asgi_middleware(ApiGuardMiddleware, access=current_access)
    service.add_asgi_middleware(ConnectionRebalancer, every_s=rebalance_every_s)
    return service


RankingService = ranking_service()  # what `bentoml serve serving.service:RankingService` runs
