"""Convert a public dataset into a landing folder and print what was written as JSON.

python -m data.importers open_bandit --sdist obp-0.5.7.tar.gz --landing DIR
    [--policies random,bts] [--campaigns all,men,women]
"""

from __future__ import annotations

import argparse
import json
import sys
from pathlib import Path

from data.importers import open_bandit


def main(argv: list[str] | None = None) -> None:
    parser = argparse.ArgumentParser(prog="python -m data.importers", description=__doc__,
                                     formatter_class=argparse.RawDescriptionHelpFormatter)
    sub = parser.add_subparsers(dest="dataset", required=True)
    obd = sub.add_parser("open_bandit", help="the Open Bandit Dataset sample shipped in obp's sdist")
    obd.add_argument("--sdist", type=Path, required=True, help=f"path to {open_bandit.SDIST_NAME}")
    obd.add_argument("--landing", type=Path, required=True, help="landing folder to write into")
    obd.add_argument("--policies", default=",".join(open_bandit.POLICIES))
    obd.add_argument("--campaigns", default=",".join(open_bandit.CAMPAIGNS))
    args = parser.parse_args(argv)
    try:
        summary = open_bandit.convert(args.sdist, args.landing, _names(args.policies, open_bandit.POLICIES),
                                      _names(args.campaigns, open_bandit.CAMPAIGNS))
    except (FileNotFoundError, ValueError) as exc:
        sys.exit(f"open_bandit: {exc}")
    print(json.dumps({k: v for k, v in summary.to_dict().items() if k != "files"}, indent=2))


def _names(text: str, allowed: tuple[str, ...]) -> tuple[str, ...]:
    names = tuple(n.strip() for n in text.split(",") if n.strip())
    unknown = set(names) - set(allowed)
    if unknown or not names:
        sys.exit(f"open_bandit: choose from {allowed}, got {text!r}")
    return names


if __name__ == "__main__":
    main()
