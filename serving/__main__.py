"""python -m serving serve [--port P] [--config FILE]   run the ranking service (bentoml serve)
python -m serving home --viewer V [--limit N] [--url U]  one ranked Home feed from a running service
python -m serving arm [--config FILE] ID...             each viewer's arm of the config's experiment
                                                        (ids as a team exports them: data.ids maps them)

serve and home use the workspace's API token (data.settings.serving_secrets: LOUPE_API_TOKEN, else
LOUPE_HOME/serving/api_token, generated there on first use).
"""

from __future__ import annotations

import argparse
import json
import os
import subprocess
import sys
import urllib.request

from data.settings import get_settings, serving_secrets, subprocess_env
from serving.launcher import serve_command


def post(url: str, body: dict, token: str, timeout: float = 10.0) -> dict:
    headers = {"Content-Type": "application/json", "Authorization": f"Bearer {token}"}
    req = urllib.request.Request(url, json.dumps(body).encode(), headers)
    with urllib.request.urlopen(req, timeout=timeout) as resp:
        return json.loads(resp.read())


def main(argv: list[str] | None = None) -> None:
    settings = get_settings()
    parser = argparse.ArgumentParser(prog="python -m serving")
    sub = parser.add_subparsers(dest="cmd", required=True)
    s = sub.add_parser("serve")
    s.add_argument("--port", type=int, default=settings.serving_port)
    s.add_argument("--config", help="a serving config file (default serving/config.toml)")
    h = sub.add_parser("home")
    h.add_argument("--viewer", type=int, required=True)
    h.add_argument("--limit", type=int, default=10)
    h.add_argument("--url", default=f"http://127.0.0.1:{settings.serving_port}")
    a = sub.add_parser("arm")
    a.add_argument("--config", help="a serving config file (default LOUPE_SERVING_CONFIG, else serving/config.toml)")
    a.add_argument("ids", nargs="+", help="viewer ids: int64, or a team's text ids")
    args = parser.parse_args(argv)
    if args.cmd == "arm":
        sys.exit(print_arms(args.ids, args.config or settings.serving_config))
    token = serving_secrets(settings).api_token  # serve: the service reads the same one
    if args.cmd == "serve":
        extra = {"LOUPE_SERVING_CONFIG": os.path.abspath(args.config)} if args.config else {}
        sys.exit(subprocess.call(serve_command(args.port), env=subprocess_env(extra)))
    body = {"viewer_id": args.viewer, "limit": args.limit}
    print(json.dumps(post(f"{args.url}/v1/feed/home", body, token), indent=2))


def print_arms(ids: list[str], config_path) -> int:
    """`<id as given>\t<int64 id>\t<arm>` per id, as the service would assign it (serving.experiment)."""
    from data.ids import BadId, to_id
    from serving.config import ServingConfig
    from serving.experiment import ArmAssigner

    assigner = ArmAssigner(ServingConfig.load(config_path).experiment)
    print(f"# experiment: {assigner.experiment or 'none (everyone is the control)'}")
    status = 0
    for text in ids:
        try:
            viewer = to_id(text)
        except BadId as exc:
            print(f"{text}\terror: {exc}", file=sys.stderr)
            status = 1
            continue
        print(f"{text}\t{viewer}\t{assigner.arm(viewer)}")
    return status


if __name__ == "__main__":
    main()
