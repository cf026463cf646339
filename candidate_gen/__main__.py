"""Live entry points of candidate generation, against the configured Redis (REDIS_URL, or the
embedded server `make run` keeps up):

    python -m candidate_gen publish --post 123 --author 45 [--created-ms MS]
    python -m candidate_gen delete  --post 123 --author 45 --created-ms MS
    python -m candidate_gen home    --viewer 7 [--limit 20]
    python -m candidate_gen rebuild-viewer --viewer 7 [--day YYYY-MM-DD]
"""

from __future__ import annotations

import argparse
import json
import time

import redis

from candidate_gen.config import CandidateConfig
from candidate_gen.fanout import FanoutWorker
from candidate_gen.filters import default_chain
from candidate_gen.home import HomeCandidateReader
from candidate_gen.rebuild import rebuild_viewer
from data import lake
from data.settings import get_settings


def main(argv: list[str] | None = None) -> None:
    parser = argparse.ArgumentParser(prog="python -m candidate_gen")
    sub = parser.add_subparsers(dest="command", required=True)
    for name in ("publish", "delete"):
        p = sub.add_parser(name)
        p.add_argument("--post", type=int, required=True)
        p.add_argument("--author", type=int, required=True)
        p.add_argument("--created-ms", type=int, default=None)
    home = sub.add_parser("home")
    home.add_argument("--viewer", type=int, required=True)
    home.add_argument("--limit", type=int, default=20)
    home.add_argument("--now-ms", type=int, default=None)
    rebuild = sub.add_parser("rebuild-viewer")
    rebuild.add_argument("--viewer", type=int, required=True)
    rebuild.add_argument("--day", default=None)
    args = parser.parse_args(argv)

    settings, cfg = get_settings(), CandidateConfig.load()
    client = redis.Redis.from_url(settings.redis_endpoint)
    now = int(time.time() * 1000)
    if args.command == "publish":
        stats = FanoutWorker(client, cfg, name="live").publish_post(args.post, args.author, args.created_ms or now)
        print(json.dumps(stats.as_metadata()))
    elif args.command == "delete":
        stats = FanoutWorker(client, cfg, name="live").delete_post(args.post, args.author, args.created_ms or now, now)
        print(json.dumps(stats.as_metadata()))
    elif args.command == "home":
        at = args.now_ms or now
        read = HomeCandidateReader(client, cfg).read(args.viewer, at, 1000)
        result = default_chain(client, cfg).run(args.viewer, read.candidates, at)
        for c in result.kept[: args.limit]:
            print(f"{c.post_id}\tauthor {c.author_id}\t{c.source}\tcreated {c.created_ms}")
        print(f"{len(result.kept)} kept of {len(read.candidates)}; removed {dict(result.counts)}; built={read.built}")
    else:
        day = args.day or lake.partition_days(settings.lake_dir, "posts")[-1]
        print(json.dumps(rebuild_viewer(settings.lake_dir, day, client, cfg, args.viewer)))


if __name__ == "__main__":
    main()
