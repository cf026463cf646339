"""The integrity labels against the simulated world's truth: precision and recall of the posts
labelled borderline, by the rules and the moderation classifier's post_labels together (what the
service acts on), by the classifier alone, and by the rules alone, as of the end of each of the
world's last days (candidate_gen/integrity_eval.py). The world's classifier is noisy on purpose
(data/world/simulate.py: it misses some truly borderline posts and flags a few good ones).

    python -m benchmarks.bench_labels [--days 3] [--world medium|tiny] -> benchmarks/results/labels.json
"""

from __future__ import annotations

import argparse

from benchmarks.common import write_result
from benchmarks.workspace import add_world_argument, chosen_world, ensure_lake
from candidate_gen.config import CandidateConfig
from candidate_gen.integrity_eval import label_quality
from data.lake import partition_days


def main(argv: list[str] | None = None) -> None:
    parser = argparse.ArgumentParser(prog="python -m benchmarks.bench_labels")
    parser.add_argument("--days", type=int, default=3, help="the world's last days, each judged as of its end")
    add_world_argument(parser)
    args = parser.parse_args(argv)
    settings = chosen_world(args.world)
    ensure_lake(settings)
    rules = CandidateConfig.load().integrity.rules
    days = partition_days(settings.lake_dir, "posts")[-args.days:]
    write_result("labels", {"world": settings.world, "rules": rules.model_dump(),
                            "days": [label_quality(settings.lake_dir, settings.truth_dir, day, rules) for day in days]})


if __name__ == "__main__":
    main()
