"""Live entry points of candidate generation, against the configured Redis (REDIS_URL, or the
embedded server `make run` keeps up) and event stream (LOUPE_STREAM_URL, or its embedded one):

    python -m candidate_gen publish --post 123 --author 45 [--created-ms MS] [--direct]
    python -m candidate_gen delete  --post 123 --author 45 --created-ms MS [--direct]
    python -m candidate_gen follow|unfollow|approve|block|unblock|mute|unmute --actor 7 --target 45
    python -m candidate_gen fanout-worker      apply the stream's post and graph events as they come
    python -m candidate_gen home    --viewer 7 [--limit 20]
    python -m candidate_gen rebuild-viewer --viewer 7 [--day YYYY-MM-DD]
    python -m candidate_gen search-index       build or refresh the post search index from the lake
    python -m candidate_gen search-worker      apply the stream's new and deleted posts to it as they come

publish, delete and the graph commands put their event on the stream: the fan-out worker applies
it within a second, and the archiver lands it in the landing folder for the lake
(docs/event_stream.md). `--direct` applies a post in this process instead, with no stream involved.
"""

from __future__ import annotations

import argparse
import json
import sys
import time

import redis
from prometheus_client import CollectorRegistry, Counter, start_http_server

from candidate_gen.config import CandidateConfig
from candidate_gen.fanout import FanoutWorker
from candidate_gen.filters import default_chain
from candidate_gen.home import HomeCandidateReader
from candidate_gen.rebuild import rebuild_viewer
from candidate_gen.stream_fanout import GROUP, FanoutStreamConsumer
from data import columns as c
from data import lake
from data.contracts import BLOCKS, FOLLOWS
from data.redis_client import FAILURES, is_outage
from data.settings import get_settings
from data.stream.backlog import StreamBacklogCollector
from data.stream.said import graph_event, post_event
from data.stream.signals import stop_on_signals
from data.stream.valkey_stream import ValkeyStream

GRAPH_ACTIONS = (*FOLLOWS.enums[c.ACTION], *BLOCKS.enums[c.ACTION])


METRICS_PORT = 9464  # the fan-out worker's Prometheus endpoint


def open_stream(settings) -> ValkeyStream:
    try:
        return ValkeyStream.of(settings)
    except FAILURES as exc:
        if not is_outage(exc):
            raise
        sys.exit(f"no event stream at {settings.stream_endpoint} ({exc}): start one (make run keeps its "
                 "embedded one up with LOUPE_SERVE=1) or set LOUPE_STREAM_URL; publish/delete --direct "
                 "apply a post without it")


def serve_metrics(stream: ValkeyStream, consumer: FanoutStreamConsumer, port: int) -> None:
    """/metrics on `port`: the stream's backlog per consumer group (read at each scrape) and this
    worker's entries by outcome."""
    registry = CollectorRegistry()
    registry.register(StreamBacklogCollector(stream))
    outcomes = Counter("loupe_fanout_stream_entries", "Stream entries this fan-out worker read, by outcome",
                       ["outcome"], registry=registry)

    def count(stats) -> None:
        outcomes.labels("applied").inc(stats.applied)
        outcomes.labels("ignored").inc(stats.ignored)
        outcomes.labels("dead_lettered").inc(sum(stats.dead_lettered.values()))

    consumer.on_poll = count
    start_http_server(port, registry=registry)


def main(argv: list[str] | None = None) -> None:
    parser = argparse.ArgumentParser(prog="python -m candidate_gen")
    sub = parser.add_subparsers(dest="command", required=True)
    for name in ("publish", "delete"):
        p = sub.add_parser(name)
        p.add_argument("--post", type=int, required=True)
        p.add_argument("--author", type=int, required=True)
        p.add_argument("--created-ms", type=int, default=None)
        p.add_argument("--direct", action="store_true", help="apply in this process, not through the stream")
    for action in GRAPH_ACTIONS:
        p = sub.add_parser(action)
        p.add_argument("--actor", type=int, required=True)
        p.add_argument("--target", type=int, required=True)
    worker = sub.add_parser("fanout-worker")
    worker.add_argument("--metrics-port", type=int, default=METRICS_PORT,
                        help="Prometheus metrics of the stream's backlog and this worker (0: none)")
    worker.add_argument("--partitions", default=None,
                        help="the stream partitions this worker owns, e.g. 0,2 (default: all)")
    home = sub.add_parser("home")
    home.add_argument("--viewer", type=int, required=True)
    home.add_argument("--limit", type=int, default=20)
    home.add_argument("--now-ms", type=int, default=None)
    sub.add_parser("search-index")
    search_worker = sub.add_parser("search-worker")
    search_worker.add_argument("--partitions", default=None, help="the stream partitions it owns (default: all)")
    rebuild = sub.add_parser("rebuild-viewer")
    rebuild.add_argument("--viewer", type=int, required=True)
    rebuild.add_argument("--day", default=None)
    args = parser.parse_args(argv)

    settings, cfg = get_settings(), CandidateConfig.load()
    client = redis.Redis.from_url(settings.redis_endpoint)
    now = int(time.time() * 1000)
    if args.command in ("publish", "delete") and args.direct:
        worker = FanoutWorker(client, cfg, name="live")
        stats = worker.publish_post(args.post, args.author, args.created_ms or now) if args.command == "publish" \
            else worker.delete_post(args.post, args.author, args.created_ms or now, now)
        print(json.dumps(stats.as_metadata()))
    elif args.command in ("publish", "delete"):
        deleted = now if args.command == "delete" else None
        event = post_event(args.post, args.author, args.created_ms or now, deleted)
        print(json.dumps({"appended": open_stream(settings).append([event], at_ms=now)}))
    elif args.command in GRAPH_ACTIONS:
        event = graph_event(args.command, args.actor, args.target, now)
        print(json.dumps({"appended": open_stream(settings).append([event], at_ms=now)}))
    elif args.command == "fanout-worker":
        stream = open_stream(settings)
        owned = None if args.partitions is None else [int(p) for p in args.partitions.split(",")]
        name = "fanout-all" if owned is None else "fanout-p" + ".".join(map(str, owned))
        consumer = FanoutStreamConsumer(stream, FanoutWorker(client, cfg, name="stream"), name=name,
                                        partitions=owned)
        if args.metrics_port:
            serve_metrics(stream, consumer, args.metrics_port)
        print(f"fan-out worker on {settings.stream_endpoint} (group {GROUP}; metrics on :{args.metrics_port}); "
              "Ctrl-C stops it", flush=True)
        consumer.run(stop_on_signals())  # SIGTERM or Ctrl-C: the poll in progress ends, the leases go back
    elif args.command in ("search-index", "search-worker"):
        search(args, settings)
    elif args.command == "home":
        at = args.now_ms or now
        read = HomeCandidateReader(client, cfg).read(args.viewer, at, 1000)
        result = default_chain(client, cfg).run(args.viewer, read.candidates, at)
        for c in result.kept.take(slice(0, args.limit)):
            print(f"{c.post_id}\tauthor {c.author_id}\t{c.source}\tcreated {c.created_ms}")
        print(f"{len(result.kept)} kept of {len(read.candidates)}; removed {dict(result.counts)}; built={read.built}")
    else:
        day = args.day or lake.partition_days(settings.lake_dir, "posts")[-1]
        print(json.dumps(rebuild_viewer(settings.lake_dir, day, client, cfg, args.viewer)))


def search(args, settings) -> None:
    """The search index (settings.search_index_file): refreshed from the lake, or kept up to date
    from the stream until SIGTERM or Ctrl-C."""
    from candidate_gen.search.lake_refresh import refresh_from_lake
    from candidate_gen.search.post_text_index import PostTextIndex
    from candidate_gen.search.search_stream_consumer import GROUP as SEARCH_GROUP
    from candidate_gen.search.search_stream_consumer import SearchIndexStreamConsumer

    with PostTextIndex(settings.search_index_file) as index:
        if args.command == "search-index":
            print(json.dumps(refresh_from_lake(index, settings.lake_dir).as_metadata()))
            return
        owned = None if args.partitions is None else [int(p) for p in args.partitions.split(",")]
        consumer = SearchIndexStreamConsumer(open_stream(settings), index, partitions=owned)
        print(f"search index worker on {settings.stream_endpoint} (group {SEARCH_GROUP}) writing "
              f"{settings.search_index_file}; Ctrl-C stops it", flush=True)
        consumer.run(stop_on_signals())


if __name__ == "__main__":
    main()
