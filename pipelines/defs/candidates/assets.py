"""Candidate generation assets (docs/candidates.md):

candidates/rebuild      the whole Redis state rebuilt from the lake as of a day (recovery, first
                        start), or one viewer's (config `viewer`)
candidates/fanout       daily: the fan-out worker applies the day's posts, graph and account
                        events (checkpointed, resumable; a store without state is rebuilt first);
                        blocking check that totals reconcile
candidates/trending     daily: engagement velocity, global and per hashtag; popular fallback
candidates/social       daily: recent engagements per user, strongest-affinity accounts
candidates/embeddings   daily: ALS author/viewer embeddings + the nearest-author index
candidates/search_index daily: the post search index (SQLite FTS5) refreshed from the lake's posts
candidates/stories      daily: the stories live at the day's end, for the Stories tray (the stream
                        adds new ones within a poll)
"""


from pathlib import Path

import dagster as dg

from candidate_gen.fanout import FanoutWorker, StateLostError
from candidate_gen.rebuild import rebuild_all, rebuild_viewer
from data import lake
from features.tables import RELATIONSHIP
from pipelines.defs.candidates.resources import (
    CandidateConfigResource,
    CandidatesDirResource,
    RedisResource,
    SearchIndexResource,
)
from pipelines.defs.features.assets import feature_key
from pipelines.defs.ingest.assets import lake_key
from pipelines.partitions import day_partitions
from pipelines.resources import WorkspaceResource

GROUP = "candidates"
REBUILD_KEY = dg.AssetKey(["candidates", "rebuild"])
FANOUT_KEY = dg.AssetKey(["candidates", "fanout"])
EVENT_LOGS = ("users", "follows", "blocks", "posts")


class RebuildConfig(dg.Config):
    day: str = ""  # rebuild as of the end of this day; empty = the newest lake day
    viewer: int = 0  # rebuild only this viewer's edges and Home cache; 0 = everyone


@dg.asset(
    key=REBUILD_KEY,
    group_name=GROUP,
    deps=[lake_key(t) for t in (*EVENT_LOGS, "impressions")],
    kinds={"redis"},
    description="Rebuild the candidate state in Redis from the lake: replay of every event day "
    "through the fan-out worker (graph only), celebrity set (features/config.toml's rule), Home "
    "caches of every account following someone and of active viewers, already-seen sets. Or one "
    "viewer's (config viewer).",
)
def candidates_rebuild(context: dg.AssetExecutionContext, config: RebuildConfig, redis: RedisResource,
                       workspace: WorkspaceResource, candidate_config: CandidateConfigResource) -> dg.MaterializeResult:
    days = lake.partition_days(workspace.lake, "posts")
    if not days:
        raise dg.Failure(description="the lake has no posts partition yet: ingest first")
    day = config.day or days[-1]
    cfg, client = candidate_config.load(), redis.client()
    if config.viewer:
        out = rebuild_viewer(workspace.lake, day, client, cfg, config.viewer)
    else:
        out = rebuild_all(workspace.lake, day, client, cfg)
    context.log.info(f"rebuilt as of {day}: {out}")
    return dg.MaterializeResult(metadata={k: dg.MetadataValue.json(v) if isinstance(v, dict) else v
                                          for k, v in out.items()})


@dg.asset(
    key=FANOUT_KEY,
    group_name=GROUP,
    partitions_def=day_partitions,
    deps=[lake_key(t) for t in EVENT_LOGS],
    kinds={"redis"},
    check_specs=[dg.AssetCheckSpec(
        "events_reconcile", asset=FANOUT_KEY, blocking=True,
        description="Every event of the day is applied or skipped with a reason: events = applied + skipped.",
    )],
    description="The fan-out worker over one landing day: posts fanned out to followers' Home "
    "caches (celebrities' kept for read-time pull), follows backfilled, unfollows removed, "
    "deletions tombstoned. Checkpointed: a re-run resumes, a finished day is a no-op. No candidate "
    "state in Redis (a fresh store, or one that lost it): rebuilt from the lake first.",
)
def candidates_fanout(context: dg.AssetExecutionContext, redis: RedisResource, workspace: WorkspaceResource,
                      candidate_config: CandidateConfigResource):
    day = context.partition_key
    cfg, client = candidate_config.load(), redis.client()
    worker = FanoutWorker(client, cfg)
    earlier = [d for d in lake.partition_days(workspace.lake, "posts") if d < day]
    if not worker.has_state():
        # a fresh store, or Redis lost it: rebuilt from the lake through the day before (through the
        # day itself when it is the first: its run below then finds it applied), as a first start does
        through = earlier[-1] if earlier else day
        context.log.warning(f"no candidate state in Redis: rebuilding it from the lake through {through}")
        context.log.info(f"rebuilt: {rebuild_all(workspace.lake, through, client, cfg)}")
    done_through = worker.checkpoint_day()
    if earlier and done_through and done_through < earlier[-1]:
        raise dg.Failure(description=f"fan-out is at {done_through}; run {earlier[-1]} before {day} "
                         "(events are applied in order)")
    try:
        stats = worker.run_day(workspace.lake, day)
    except StateLostError as exc:
        raise dg.Failure(description=str(exc)) from exc
    meta = stats.as_metadata()
    yield dg.MaterializeResult(metadata={k: dg.MetadataValue.json(v) if isinstance(v, dict) else v
                                         for k, v in meta.items()})
    yield dg.AssetCheckResult(check_name="events_reconcile", passed=stats.reconciles, metadata={
        "events": stats.events, "applied": stats.applied, "skipped": sum(stats.skipped.values())})


def _metadata(out: dict) -> dict:
    return {k: dg.MetadataValue.json(v) if isinstance(v, (dict, list)) else v for k, v in out.items()}


@dg.asset(
    key=dg.AssetKey(["candidates", "trending"]),
    group_name=GROUP,
    partitions_def=day_partitions,
    deps=[lake_key("engagements"), lake_key("posts")],
    kinds={"redis"},
    description="Engagement velocity over sliding windows as of the end of the day, global and per "
    "hashtag; viewers' top hashtags; the popular fallback (candidate_gen/explore/trending.py).",
)
def candidates_trending(context: dg.AssetExecutionContext, redis: RedisResource, workspace: WorkspaceResource,
                        candidate_config: CandidateConfigResource) -> dg.MaterializeResult:
    from candidate_gen.explore.trending import build_trending

    return dg.MaterializeResult(metadata=_metadata(
        build_trending(workspace.lake, context.partition_key, redis.client(), candidate_config.load())))


@dg.asset(
    key=dg.AssetKey(["candidates", "social"]),
    group_name=GROUP,
    partitions_def=day_partitions,
    deps=[lake_key("engagements"), lake_key("posts"), feature_key(RELATIONSHIP)],
    kinds={"redis"},
    description="Each user's recently engaged posts and each viewer's strongest-affinity accounts "
    "(from the viewer_author features), for the social Explore source.",
)
def candidates_social(context: dg.AssetExecutionContext, redis: RedisResource, workspace: WorkspaceResource,
                      candidate_config: CandidateConfigResource) -> dg.MaterializeResult:
    from candidate_gen.explore.social import build_social

    return dg.MaterializeResult(metadata=_metadata(
        build_social(workspace.lake, context.partition_key, redis.client(), candidate_config.load())))


@dg.asset(
    key=dg.AssetKey(["candidates", "fatigue"]),
    group_name=GROUP,
    partitions_def=day_partitions,
    deps=[lake_key("engagements")],
    kinds={"redis"},
    description="What each viewer pushed away (\"see fewer\", \"not interested\", hide, report) over "
    "[fatigue] window_days, for the ranking service's fatigue rescorer; the stream adds the same within a "
    "poll, and an event already there is not added twice.",
)
def candidates_fatigue(context: dg.AssetExecutionContext, redis: RedisResource, workspace: WorkspaceResource,
                       candidate_config: CandidateConfigResource) -> dg.MaterializeResult:
    from candidate_gen.fatigue import build_fatigue

    cfg = candidate_config.load()
    return dg.MaterializeResult(metadata=_metadata(build_fatigue(
        workspace.lake, context.partition_key, redis.client(), cfg.fatigue, cfg.keys)))


@dg.asset(
    key=dg.AssetKey(["candidates", "integrity"]),
    group_name=GROUP,
    partitions_def=day_partitions,
    deps=[lake_key("engagements"), lake_key("posts"), lake_key("post_labels")],
    kinds={"redis"},
    description="Content labels (spam, borderline, sensitive) of posts and accounts from [integrity.rules] "
    "over the engagements, impressions, posts, users and post_labels (a moderation classifier's) logs of the "
    "window, replacing the last day's whole, for the ranking service's integrity stage (allow, interstitial, "
    "downrank, drop). Metadata: the labels counted, and which rules had their logs (a team's export without "
    "impressions runs the others).",
)
def candidates_integrity(context: dg.AssetExecutionContext, redis: RedisResource, workspace: WorkspaceResource,
                         candidate_config: CandidateConfigResource) -> dg.MaterializeResult:
    from candidate_gen.integrity import build_labels

    cfg = candidate_config.load()
    return dg.MaterializeResult(metadata=_metadata(build_labels(
        workspace.lake, context.partition_key, redis.client(), cfg.integrity, cfg.keys)))


@dg.asset(
    key=dg.AssetKey(["candidates", "embeddings"]),
    group_name=GROUP,
    partitions_def=day_partitions,
    deps=[lake_key("engagements")],
    kinds={"redis", "faiss"},
    description="ALS viewer and author embeddings from co-engagement (implicit), the nearest-author "
    "index (faiss) under LOUPE_HOME/candidates/embeddings/dt=<day>/, viewer vectors to Redis. "
    "Without positive engagements to learn from, an empty model switched off with the reason "
    "(metadata `disabled`); the embedding source then reports itself disabled.",
)
def candidates_embeddings(context: dg.AssetExecutionContext, redis: RedisResource, workspace: WorkspaceResource,
                          candidate_config: CandidateConfigResource,
                          candidates_dir: CandidatesDirResource) -> dg.MaterializeResult:
    from candidate_gen.explore import embeddings

    day, cfg = context.partition_key, candidate_config.load()
    model = embeddings.train_embeddings(workspace.lake, day, cfg)
    folder = embeddings.save(model, embeddings_dir(candidates_dir, day))
    published = embeddings.publish_viewer_vectors(model, redis.client(), cfg)
    if model.disabled:  # saved all the same: the serving source reads it and reports itself disabled
        context.log.warning(f"embedding source switched off for {day}: {model.disabled}")
    return dg.MaterializeResult(metadata={
        "viewers": int(len(model.viewer_ids)), "authors": int(len(model.author_ids)),
        "published_viewer_vectors": published, "index": dg.MetadataValue.path(str(folder)),
        "disabled": model.disabled or "",
    })


@dg.asset(
    key=dg.AssetKey(["candidates", "search_index"]),
    group_name=GROUP,
    partitions_def=day_partitions,
    deps=[lake_key("posts")],
    kinds={"sqlite"},
    description="The post search index of POST /v1/search (candidate_gen/search/, docs/serving.md \"Search\"): "
    "every posts partition up to the day not applied as it now is (new or re-ingested days), creations "
    "upserted, deletions removed for good; idempotent. The search index worker keeps it fresh from the "
    "stream between runs.",
)
def candidates_search_index(context: dg.AssetExecutionContext, workspace: WorkspaceResource,
                            search_index: SearchIndexResource) -> dg.MaterializeResult:
    from candidate_gen.search.lake_refresh import refresh_from_lake
    from candidate_gen.search.post_text_index import PostTextIndex

    with PostTextIndex(search_index.path) as index:
        stats = refresh_from_lake(index, workspace.lake, through=context.partition_key)
    return dg.MaterializeResult(metadata={**stats.as_metadata(), "index": dg.MetadataValue.path(search_index.path)})


@dg.asset(
    key=dg.AssetKey(["candidates", "stories"]),
    group_name=GROUP,
    partitions_def=day_partitions,
    deps=[lake_key("stories")],
    kinds={"redis"},
    description="The stories live at the end of the day (posted in its last 24 h, not deleted) into each "
    "author's story set, for POST /v1/stories/tray (candidate_gen/stories.py); the fan-out worker adds "
    "stories from the stream within a poll, and one written by both is written once. An export without a "
    "stories log: nothing to load (metadata `absent`).",
)
def candidates_stories(context: dg.AssetExecutionContext, redis: RedisResource, workspace: WorkspaceResource,
                       candidate_config: CandidateConfigResource) -> dg.MaterializeResult:
    from candidate_gen.stories import load_from_lake

    return dg.MaterializeResult(metadata=_metadata(load_from_lake(
        workspace.lake, context.partition_key, redis.client(), candidate_config.load().keys)))


def embeddings_dir(candidates_dir: CandidatesDirResource, day: str) -> Path:
    return Path(candidates_dir.path) / "embeddings" / f"dt={day}"


candidate_assets = [
    candidates_rebuild, candidates_fanout, candidates_trending, candidates_social, candidates_fatigue,
    candidates_integrity, candidates_embeddings, candidates_search_index, candidates_stories,
]
