"""profile-serving: where a Home request's time goes, as a flame graph of the ranking service under
bench-serving's load.

    uv run python -m benchmarks.profile_serving [--concurrency 2] [--duration 30] [--out docs/serving_profile.svg]

The fast service of bench-serving (its prepared medium-world state, benchmarks/serving_state.py; prepared
if absent) is loaded by the same closed-loop client at `concurrency`, and py-spy samples every process
of the service (the BentoML workers included) for `duration` seconds; the SVG's widths are shares of
samples, per call stack. `--idle` also samples threads waiting (on Redis, on a lock), which shows
waits as well as work.
"""

from __future__ import annotations

import argparse
import subprocess
import sys
import threading
from pathlib import Path

from benchmarks.serving_load import BenchService, load
from benchmarks.serving_state import prepared_state
from data.settings import REPO_ROOT

DEFAULT_OUT = REPO_ROOT / "docs" / "serving_profile.svg"


def main(argv: list[str] | None = None) -> None:
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--world", default="medium")
    parser.add_argument("--concurrency", type=int, default=2)
    parser.add_argument("--duration", type=float, default=30.0, help="seconds sampled under load")
    parser.add_argument("--rate", type=int, default=250, help="samples per second")
    parser.add_argument("--idle", action="store_true", help="sample waiting threads too")
    parser.add_argument("--out", type=Path, default=DEFAULT_OUT)
    parser.add_argument("--format", default="flamegraph", choices=("flamegraph", "raw", "speedscope"),
                        help="raw: collapsed stacks, one line per stack with its sample count")
    parser.add_argument("--viewers", type=int, default=300)
    parser.add_argument("--presample", type=int, default=600)
    parser.add_argument("--reprepare", action="store_true")
    args = parser.parse_args(argv)

    with prepared_state(args) as st:
        service = BenchService.start("profiled", st.workspace, st.config_files["fast"])
        try:
            service.wait_ready()
            args.out.parent.mkdir(parents=True, exist_ok=True)
            cmd = [str(Path(sys.executable).with_name("py-spy")), "record", "--pid",
                   str(service.process.process.pid), "--subprocesses", "--duration", str(int(args.duration)),
                   "--rate", str(args.rate), "--format", args.format, "--output", str(args.out), "--nonblocking"]
            if args.idle:
                cmd.append("--idle")
            # the load runs a little longer than the sampling, so every sample is of a loaded service
            loader = threading.Thread(target=load, args=(service, st.workspace, st.viewers_file, "profile",
                                                         args.concurrency, 30, 0),
                                      kwargs={"duration_s": args.duration + 5})
            loader.start()
            subprocess.run(cmd, check=True)
            loader.join()
        finally:
            service.stop()
    print(f"wrote {args.out}")


if __name__ == "__main__":
    main()
