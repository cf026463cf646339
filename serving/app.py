"""The ranking application: every component built once, the three pipelines, the request handlers.

BentoML's service class (serving/service.py) is a thin typed shell over `RankingApp`; tests drive the
same object through the real HTTP app. Dependencies are injected (`RankingApp.build`), and
`from_settings` wires the defaults: Redis (candidates and the packed feature view), the Feast
registry, the MLflow registry, the landing folder, the embedding index of the newest day.
"""

from __future__ import annotations

import itertools
import logging
import secrets
import sys
import threading
import time
import uuid
from collections.abc import Mapping
from dataclasses import dataclass, replace
from functools import partial
from typing import Any

import numpy as np
import redis
from redis.backoff import NoBackoff
from redis.retry import Retry

from candidate_gen import stories
from candidate_gen.filters import default_chain, search_chain, story_chain
from candidate_gen.reads import StepReader
from candidate_gen.search.post_text_index import SearchIndexReader
from candidate_gen.sources.catalog import build_sources
from data.contracts import ENGAGEMENTS
from data.redis_client import FAILURES, Client, connect
from data.settings import ServingSecrets, Settings, serving_secrets
from data.stream.valkey_stream import ValkeyStream
from serving import pipeline as pl
from serving.admission import Admission
from serving.api_guard import ApiAccess, BadRequest
from serving.arm_models import ArmModels, treatment_targets
from serving.clock import Clock
from serving.config import ServingConfig
from serving.cursors import BadCursor, PageCursorSigner
from serving.embeddings import LatestEmbeddings
from serving.event_intake import EventIntake, IntakeResult, StreamUnavailable
from serving.experiment import ARMS, CONTROL, TREATMENT, ArmAssigner
from serving.heuristic import HeuristicScorer
from serving.impression_log import ImpressionLogWriter, StreamSink
from serving.metrics import PipelineMetrics
from serving.model_store import ModelStore, registry_loader, registry_lookup
from serving.pages import Answer, FeedPage, Item, RankedPosts
from serving.post_hashtags import PostHashtags
from serving.search.post_search import PostSearch
from serving.stages.candidate_sources_stage import CandidateSourcesStage, SourceGroup
from serving.stages.cheap_path import OVERLOAD
from serving.stages.fatigue_rescorer import FatigueRescorer
from serving.stages.feature_hydrator import FeastFeatureHydrator, PackedFeatureHydrator
from serving.stages.integrity_filter_stage import IntegrityFilterStage
from serving.stages.lazy_hydrator import LazyHydrator
from serving.stages.model_scorer import ModelScorer
from serving.stages.new_author_boost_rescorer import NewAuthorBoostRescorer
from serving.stages.seen_recorder import SeenRecorder
from serving.stages.selectors import HomeMixSelector, RankAllSelector, TopKSelector
from serving.stages.served_impression_logger import ServedImpressionLogger
from serving.stages.supplied_posts_source import SuppliedPostsSource
from serving.stages.visibility_filter_stage import VisibilityFilterStage
from serving.stories.story_tray import StoryStateUnavailable, StoryTray
from serving.surfaces import Components, cheap_pipeline, explore_pipeline, home_pipeline, rank_pipeline

# a call to the event stream may wait this long (its fsync wait is 5 s): the impression writer's
# thread then appends to the landing file instead, never hanging on a stalled server
STREAM_TIMEOUT_S = 6.0

logger = logging.getLogger(__name__)


@dataclass
class RankingApp:
    config: ServingConfig
    home: pl.RecommendationPipeline
    explore: pl.RecommendationPipeline
    ranker: pl.RecommendationPipeline
    models: ModelStore  # the champions (and the control arm's models)
    arms: ArmModels  # which model each (surface, arm) is scored with
    assigner: ArmAssigner  # the viewer's arm of the experiment, once per request
    clock: Clock
    metrics: PipelineMetrics
    access: ApiAccess  # who may call (serving.api_guard reads it on every request)
    cursors: PageCursorSigner
    admission: Admission
    cheap: dict[str, pl.RecommendationPipeline]  # surface (home | explore | rank) -> its cheap path
    closers: tuple = ()
    warm: bool = False
    intake: EventIntake | None = None  # POST /v1/events (only with an event stream)
    searcher: PostSearch | None = None  # POST /v1/search (serving/search/)
    story_tray: StoryTray | None = None  # POST /v1/stories/tray (serving/stories/)

    # --- construction -------------------------------------------------------------------------
    @classmethod
    def build(cls, config: ServingConfig, *, candidates_client: Any, hydrator: Any, models: ModelStore,
              clock: Clock, embeddings: Any = None, impressions: ImpressionLogWriter | None = None,
              closers: tuple = (), secrets_: ServingSecrets | None = None, filters_client: Any = None,
              filters_retry_client: Any = None, treatment_models: ModelStore | None = None,
              metrics: PipelineMetrics | None = None, search_index: Any = None) -> RankingApp:
        """`search_index`: the search index file (None: /v1/search answers degraded and fatigue reads
        no hashtags). `secrets_`:
        the API token and cursor secret; None: random ones nobody else knows (an app built in-process:
        tests read `app.access.token`). `filters_client`: the privacy filters' Redis client (its
        own, more patient, timeout); None: `candidates_client`.
        `filters_retry_client`: theirs for retries (more patient still); None: `filters_client`.
        `treatment_models`: the experiment's treatment arm's models, when it names any
        (serving.arm_models.treatment_targets). `metrics`: the one metrics object of the app (the
        model stores report swaps to it too); None: a new one."""
        secrets_ = secrets_ or ServingSecrets(secrets.token_urlsafe(32), secrets.token_urlsafe(32))
        cfg = config.candidates
        client = candidates_client
        filters_client = filters_client or client
        sources = build_sources(client, cfg, embeddings)
        admission = config.admission
        cheap_names = tuple(dict.fromkeys(admission.home_sources + admission.explore_sources))
        unknown = set(cheap_names) - set(sources)
        if unknown:
            raise ValueError(f"serving config [admission]: unknown sources {sorted(unknown)}; "
                             f"choose from {sorted(sources)}")
        cheap_sources = build_sources(client, cfg.with_caps(admission.candidates, cheap_names), embeddings, cheap_names)
        late_min, model_min = config.budget.late_sources_min_wait_ms, config.budget.model_min_ms
        reader = StepReader(client)  # every source's reads of a step in one round trip

        def group(names: tuple[str, ...], size: int, pick=sources) -> SourceGroup:
            return SourceGroup(tuple(pick[n] for n in names), size)

        home_cfg, explore_cfg = config.home, config.explore
        in_network_size = sum(cfg.source(n).cap for n in home_cfg.in_network_sources)
        side_effects: list = []
        if impressions is not None and config.impressions.enabled:
            side_effects.append(ServedImpressionLogger(impressions))
        if config.impressions.record_seen:
            side_effects.append(SeenRecorder(client, cfg))
        metrics = metrics or PipelineMetrics()
        heuristic = HeuristicScorer(config.heuristic)
        experiment = config.experiment
        arms = ArmModels(models, experiment.treatment if experiment.enabled else None, treatment_models)
        scorer = ModelScorer(arms, heuristic, config.cascade, config.budget)
        attempts = config.budget.filters_attempts
        privacy = {"attempts": attempts, "retry_client": filters_retry_client}
        index = SearchIndexReader(search_index) if search_index is not None else None  # search's and fatigue's
        fatigue = FatigueRescorer(client, cfg.keys, cfg.fatigue,
                                  experiment.treatment.fatigue if experiment.enabled else None,
                                  PostHashtags(index) if index is not None else None)
        riders = (fatigue,) if fatigue.reads_any else ()  # its read goes with the sources' first round trip
        integrity = IntegrityFilterStage(cfg.integrity, experiment.treatment.integrity if experiment.enabled else None)
        # the labels are read on the privacy filters' round trip when either arm decides by them
        cfg = cfg.model_copy(update={"integrity": cfg.integrity.changed(enabled=any(integrity.on.values()))})
        feed_components = Components(
            home_sources=CandidateSourcesStage(
                [group(home_cfg.in_network_sources, in_network_size),
                 group(home_cfg.out_of_network_sources, home_cfg.out_of_network_candidates)], reader, late_min,
                model_min, riders),
            explore_sources=CandidateSourcesStage([group(explore_cfg.sources, explore_cfg.candidates)], reader,
                                                  late_min, model_min, riders),
            supplied_posts=SuppliedPostsSource(client, cfg),
            filters=VisibilityFilterStage(default_chain(filters_client, cfg, **privacy)),
            hydrator=hydrator,
            scorer=scorer,
            fatigue=fatigue,
            new_author_boost=NewAuthorBoostRescorer(
                config.new_author_boost, experiment.treatment.new_author_boost if experiment.enabled else None),
            integrity=integrity,
            side_effects=tuple(side_effects),
        )
        # /v1/rank: the caller chose the candidates; privacy filters apply, already-seen does not
        rank_components = Components(**{**feed_components.__dict__,
                                        "filters": VisibilityFilterStage(default_chain(filters_client, cfg, seen=False,
                                                                                       **privacy)),
                                        "side_effects": ()})
        r = config.rescoring
        share = config.exploration.share
        home_rng, explore_rng = (np.random.default_rng(s) for s in
                                 np.random.SeedSequence(config.exploration.seed or None).spawn(2))
        return cls(
            config=config,
            home=home_pipeline(feed_components, home_cfg.out_of_network_share, home_cfg.fill_with_out_of_network,
                               home_cfg.out_of_network_scale, r.author_decay, r.author_floor, share, home_rng),
            explore=explore_pipeline(feed_components, r.author_decay, r.author_floor, share, explore_rng),
            ranker=rank_pipeline(rank_components),
            models=models,
            arms=arms,
            assigner=ArmAssigner(experiment),
            clock=clock,
            metrics=metrics,
            access=ApiAccess.from_config(secrets_.api_token, config.api),
            cursors=PageCursorSigner(secrets_.cursor_secret, config.api.cursor_ttl_s, config.api.max_offset),
            admission=Admission(admission),
            cheap={
                "home": cheap_pipeline("home", CandidateSourcesStage(
                    [group((n,), admission.candidates, cheap_sources) for n in admission.home_sources], reader,
                    late_min),
                    feed_components,
                    HomeMixSelector(home_cfg.out_of_network_share, home_cfg.fill_with_out_of_network), heuristic),
                "explore": cheap_pipeline("explore", CandidateSourcesStage(
                    [group(admission.explore_sources, admission.candidates * len(admission.explore_sources),
                           cheap_sources)], reader, late_min),
                    feed_components, TopKSelector(), heuristic),
                "rank": cheap_pipeline("rank", rank_components.supplied_posts, rank_components, RankAllSelector(),
                                       heuristic),
            },
            closers=closers,
            searcher=PostSearch(index,
                                search_chain(filters_client, cfg, **privacy), filters_client, cfg.keys,
                                config.search, integrity),
            story_tray=StoryTray(candidates_client, story_chain(filters_client, cfg, **privacy), cfg.keys,
                                 config.stories, clock),
        )

    @classmethod
    def from_settings(cls, settings: Settings, config: ServingConfig | None = None) -> RankingApp:
        from data.settings import quiet_mlflow
        from training.tracking import LazyClient

        config = config or ServingConfig.load(settings.serving_config)
        sys.setswitchinterval(config.budget.gil_switch_ms / 1000)  # the worker process's: [budget] says why
        timeout = config.budget.redis_timeout_ms / 1000
        client = service_redis(settings.redis_endpoint, timeout)
        filters_client = service_redis(settings.redis_endpoint, config.budget.filters_timeout_ms / 1000)
        filters_retry_client = service_redis(settings.redis_endpoint, config.budget.filters_retry_timeout_ms / 1000)
        quiet_mlflow()
        # made on first use: a registry down at start fails lookups (served from disk), not the worker
        mlflow_client = LazyClient(settings.tracking_uri, str(settings.mlflow_artifact_root))
        metrics = PipelineMetrics()

        def on_swap(surface: str, model) -> None:
            if model is not None:
                metrics.swapped(surface, model.engine)

        registry = (registry_lookup(mlflow_client), registry_loader(mlflow_client))
        compiled = settings.home / "serving" / "compiled"
        models = ModelStore(*registry, config.model, config.cascade, compiled, on_swap=on_swap)
        targets = treatment_targets(config)  # the experiment's treatment's own models, polled like the champions
        treatment = ModelStore(*registry, config.model, config.cascade, compiled, on_swap=on_swap,
                               targets=targets, role=TREATMENT) if targets else None
        hydrator = LazyHydrator(lambda: _hydrator(settings, config, timeout))
        # with an event stream (make run hands it its own), served impressions go onto it
        stream = StreamSink(partial(ValkeyStream.of, settings, STREAM_TIMEOUT_S)) if settings.stream_url else None
        impressions = ImpressionLogWriter(settings.landing_dir, config.impressions.instance, stream=stream) \
            if config.impressions.enabled else None
        embeddings = LatestEmbeddings(settings.home / "candidates" / "embeddings")
        app = cls.build(config, candidates_client=client, hydrator=hydrator, models=models,
                        clock=Clock.of(settings), embeddings=embeddings, impressions=impressions,
                        closers=tuple(x for x in (impressions, models, treatment) if x is not None),
                        secrets_=serving_secrets(settings),  # the workspace's, generated if absent
                        filters_client=filters_client, filters_retry_client=filters_retry_client,
                        treatment_models=treatment, metrics=metrics, search_index=settings.search_index_file)
        if settings.stream_url:
            app.intake = EventIntake(partial(ValkeyStream.of, settings, STREAM_TIMEOUT_S),
                                     settings.log_vocabulary(),
                                     app.clock, config.events)
        hydrator.connect()  # now, not on the first request (Feast registry, Redis connections)
        for store in app.arms.stores:
            store.start()
        threading.Thread(target=app.warm_up, name="warm-up", daemon=True).start()
        return app

    def warm_up(self, timeout_s: float = 600.0) -> None:
        """Once every arm's models are resolved, run each pipeline once per arm (no side effects):
        connection pools, thread pools, the compiled libraries and NumPy paths are warm before
        traffic comes."""
        end = time.monotonic() + timeout_s
        while not self.arms.ready() and time.monotonic() < end:
            time.sleep(0.2)
        for pipeline in (self.home, self.explore, self.cheap["home"], self.cheap["explore"]):
            for viewer, arm in itertools.product((1, 2, 3), ARMS if self.arms.treatment else (CONTROL,)):
                for _ in range(2):  # any ids: cold paths (no cache, no vector) warm too
                    query = pl.FeedQuery("warm-up", pipeline.surface, viewer, 20, self.clock.now_ms(),
                                         pl.Deadline(self.config.budget.total_ms), arm=arm)
                    pl.run(replace(pipeline, side_effects=()), query)
        self.warm = True

    # --- requests -----------------------------------------------------------------------------
    def ready(self) -> bool:
        """Every arm's models resolved (compiled when configured so) and every pipeline run once."""
        return self.warm and self.arms.ready()

    def feed(self, surface: str, viewer_id: int, limit: int, cursor: str | None = None,
             arrived: float | None = None) -> FeedPage:
        """`arrived`: time.perf_counter() when the request reached the server (the budget counts
        from there, the wait for a worker thread included); None: now."""
        deadline = pl.Deadline(self.config.budget.total_ms, arrived)
        now_ms = self.clock.now_ms()
        try:
            offset = self.cursors.offset(cursor, viewer_id, surface, now_ms)
        except BadCursor as exc:
            raise BadRequest(str(exc)) from None
        query = pl.FeedQuery(uuid.uuid4().hex, surface, viewer_id, limit, now_ms, deadline, offset,
                             **self._arm(viewer_id))
        state = self._run(self.home if surface == "home" else self.explore, query)
        items = _items(state, offset)
        total_ms = deadline.elapsed_ms()
        self.metrics.response(surface, state, total_ms, query.arm)
        return {
            **self._common(query, state, total_ms),
            "items": items,
            "filtered": _without_relationships(state.removed),
            "next_cursor": self.cursors.issue(viewer_id, surface, offset + len(items), now_ms) if items else None,
        }

    def rank(self, surface: str, viewer_id: int, post_ids: list[int], arrived: float | None = None) -> RankedPosts:
        deadline = pl.Deadline(self.config.budget.total_ms, arrived)
        query = pl.FeedQuery(uuid.uuid4().hex, surface, viewer_id, len(post_ids), self.clock.now_ms(),
                             deadline, 0, tuple(post_ids), **self._arm(viewer_id))
        state = self._run(self.ranker, query)
        items = _items(state, 0)
        total_ms = deadline.elapsed_ms()
        self.metrics.response("rank", state, total_ms, query.arm)
        # Why a supplied post was left out stays here (metrics, debug log): per post, it would tell
        # any caller who blocked or muted whom.
        logger.debug("rank %s: left out %s", query.request_id, dict(state.removed))
        return {**self._common(query, state, total_ms), "items": items, "not_rankable": sum(state.removed.values())}

    def _arm(self, viewer_id: int) -> dict[str, Any]:
        """The viewer's arm of the experiment (FeedQuery's fields): one hash per request."""
        return {"arm": self.assigner.arm(viewer_id), "experiment": self.assigner.experiment}

    def _run(self, pipeline: pl.RecommendationPipeline, query: pl.FeedQuery) -> pl.FeedState:
        """The full pipeline, or the cheap path when admission says the worker is overloaded."""
        with self.admission.enter(query.deadline.elapsed_ms()) as overload:
            if overload is None:
                return pl.run(pipeline, query, self.metrics)
            # its own budget: the request's is spent, and an empty page is worse than a late one
            cheap_query = replace(query, deadline=pl.Deadline(self.config.admission.cheap_budget_ms))
            state = pl.run(self.cheap[pipeline.surface], cheap_query, self.metrics)
        state.degraded[OVERLOAD] = overload
        return state

    @staticmethod
    def _common(query: pl.FeedQuery, state: pl.FeedState, total_ms: float) -> Answer:
        return {
            "request_id": query.request_id,
            "surface": query.surface,
            "viewer_id": query.viewer_id,
            "experiment": query.experiment,
            "arm": query.arm,
            "model_version": state.model_version,
            "scorer": state.scorer,
            "heuristic_reason": state.heuristic_reason,
            "degraded": sorted(state.degraded),
            "degraded_reasons": dict(state.degraded),
            "candidates": {o.name: len(o.candidates) for o in state.outcomes},
            "stage_ms": {**state.stage_ms, "total": round(total_ms, 3)},
        }

    def search(self, viewer_id: int, query: str, limit: int, arrived: float | None = None) -> dict[str, Any]:
        """POST /v1/search (serving.search.post_search): EmptyQuery when the query holds no word."""
        deadline = pl.Deadline(self.config.search.budget_ms, arrived)
        terms = self.searcher.terms(query)
        outcome = self.searcher.search(viewer_id, terms, limit, self.clock.now_ms(), deadline.remaining_ms)
        self.metrics.answered("search", deadline.elapsed_ms(), outcome.degraded)
        return {"request_id": uuid.uuid4().hex, "viewer_id": viewer_id, "items": outcome.items,
                "degraded": sorted(outcome.degraded), "degraded_reasons": outcome.degraded,
                "total_ms": round(deadline.elapsed_ms(), 3)}

    def stories_tray(self, viewer_id: int, limit: int | None = None, arrived: float | None = None) -> dict[str, Any]:
        """POST /v1/stories/tray (serving.stories.story_tray)."""
        deadline = pl.Deadline(self.config.stories.budget_ms, arrived)
        outcome = self.story_tray.tray(viewer_id, limit or self.config.stories.tray_limit, deadline.remaining_ms)
        self.metrics.answered("stories_tray", deadline.elapsed_ms(), outcome.degraded, outcome.removed)
        return {"request_id": uuid.uuid4().hex, "viewer_id": viewer_id, "served_at_ms": outcome.served_at_ms,
                "items": outcome.items, "degraded": sorted(outcome.degraded), "degraded_reasons": outcome.degraded,
                "total_ms": round(deadline.elapsed_ms(), 3)}

    def stories_seen(self, viewer_id: int, story_ids: list[int]) -> int:
        """POST /v1/stories/seen: the viewer saw these stories (StoryStateUnavailable: retry)."""
        try:
            return stories.record_seen(self.story_tray.client, self.config.candidates.keys, viewer_id, story_ids)
        except FAILURES as exc:
            raise StoryStateUnavailable(f"the stories' state did not take the views ({type(exc).__name__}); "
                                        "retry: recording a view twice changes nothing") from exc

    def events(self, events: list[Any], log_name: str = ENGAGEMENTS.name) -> IntakeResult:
        """Client events onto the stream (serving.event_intake): engagements, or (`log_name`
        "blocks") blocks and mutes."""
        if self.intake is None:
            raise StreamUnavailable("this service runs without an event stream (LOUPE_STREAM_URL unset): "
                                    "it takes no events")
        if len(events) > self.config.events.max_batch:
            raise BadRequest(f"{len(events)} events in one request: send at most {self.config.events.max_batch}")
        return self.intake.accept(events, log_name)

    def close(self) -> None:
        # side effects still queued (the last pages' impressions) reach the writer before it closes
        if not pl.drain_side_effects(timeout_s=30):
            logger.warning("closing with side effects still pending: some served impressions may be lost")
        for closer in self.closers:
            try:
                closer.close() if hasattr(closer, "close") else closer.stop()
            except Exception:
                logger.exception("closing %r failed", closer)


def _items(state: pl.FeedState, offset: int) -> list[Item]:
    """The page's items from the block's columns (one conversion per column, not per candidate)."""
    idx, c = state.selected, state.candidates
    columns = (c.post[idx].tolist(), c.author[idx].tolist(), state.scores[idx].tolist(), c.source_names(idx),
               range(offset, offset + len(idx)))
    covered = state.interstitials
    return [{"post_id": p, "author_id": a, "score": s, "source": src, "position": k, "interstitial": covered.get(p)}
            for p, a, s, src, k in zip(*columns, strict=True)]


def _hydrator(settings: Settings, config: ServingConfig, timeout_s: float):
    """The configured hydrator over the workspace's Feast repo (built lazily: see LazyHydrator)."""
    from features.online.ranking import RankingFeatureReader
    from features.store import feature_store

    store = feature_store(settings, settings.redis_endpoint)
    client = service_redis(settings.redis_endpoint, timeout_s, health_check_interval=0)
    reader = RankingFeatureReader(store, config.hydration.feature_service, client=client,
                                  shared_ms=config.hydration.shared_ms)
    min_ms = config.budget.model_min_ms
    if config.hydration.reader == "feast":
        return FeastFeatureHydrator(store, reader.service, tuple(reader.feature_names), min_ms)
    return PackedFeatureHydrator(reader, min_ms)


def service_redis(url: str, timeout_s: float, health_check_interval: int = 30) -> Client:
    """A Redis client for the request path: `timeout_s` per call and no retries of redis-py's own.
    Its default (3 retries, exponential backoff from 1 s) would hold a request for seconds after
    one slow reply; the stages retry themselves where it pays, within the request's budget.
    A cluster client if the URL is a cluster node's (data.redis_client asks the server once). A
    Redis that cannot be reached at start gets a one-server client, so the worker starts and serves
    degraded pages until Redis answers; a cluster that was down at start is then refused with MOVED
    (degraded pages, logged) until the worker restarts."""
    kwargs = dict(socket_timeout=timeout_s, socket_connect_timeout=timeout_s,
                  health_check_interval=health_check_interval, retry=Retry(NoBackoff(), 0))
    try:
        return connect(url, **kwargs)
    except redis.ConnectionError as exc:
        logger.warning("Redis at %s did not answer at start (%s): assuming one server", url, exc)
        return redis.Redis.from_url(url, **kwargs)


def wait_ready(app: RankingApp, timeout_s: float) -> bool:
    end = time.monotonic() + timeout_s
    while time.monotonic() < end:
        if app.ready():
            return True
        time.sleep(0.1)
    return app.ready()


# Filter reasons that would tell a caller who blocked or muted whom: one `not_visible` count in
# responses (per-reason detail stays in metrics and the debug log).
RELATIONSHIP_REASONS = frozenset({"blocked", "muted"})


def _without_relationships(removed: Mapping[str, int]) -> dict[str, int]:
    out = {reason: n for reason, n in removed.items() if reason not in RELATIONSHIP_REASONS}
    hidden = sum(n for reason, n in removed.items() if reason in RELATIONSHIP_REASONS)
    if hidden:
        out["not_visible"] = hidden
    return out
