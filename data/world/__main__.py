"""Generate a world and print its summary as JSON.

python -m data.world --size tiny --landing DIR --truth DIR [--seed N]
"""

from __future__ import annotations

import argparse
import json
import logging
from pathlib import Path

from data.columns import WORLD_SEED, WORLD_SIZES
from data.world import generate_world


def main(argv: list[str] | None = None) -> None:
    parser = argparse.ArgumentParser(prog="python -m data.world", description=__doc__)
    parser.add_argument("--size", choices=WORLD_SIZES, default="tiny")
    parser.add_argument("--landing", type=Path, required=True, help="landing folder to write")
    parser.add_argument("--truth", type=Path, required=True, help="ground-truth folder to write")
    parser.add_argument("--seed", type=int, default=WORLD_SEED)
    args = parser.parse_args(argv)
    logging.basicConfig(level=logging.INFO, format="%(asctime)s %(message)s")
    summary = generate_world(
        size=args.size, seed=args.seed, landing_dir=args.landing, truth_dir=args.truth
    )
    print(json.dumps(summary.to_dict(), indent=2))


if __name__ == "__main__":
    main()
