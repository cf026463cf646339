"""The stream feature worker (docs/streaming_features.md).

    python -m features.streaming worker [--partitions 0,2] [--batch 500] [--linger-ms 50]

Run one per set of partitions: `--partitions 0,2` and `--partitions 1,3` share the work (each holds
a lease on its own). Stops on Ctrl-C or SIGTERM, giving its partitions back; a killed one's (SIGKILL)
are taken over after 30 s.
"""

from __future__ import annotations

import argparse
import sys

from data.redis_client import FAILURES, is_outage
from data.settings import get_settings
from data.stream.signals import stop_on_signals
from data.stream.valkey_stream import ValkeyStream
from features.store import feature_store
from features.streaming.worker import GROUP, LINGER_MS, StreamFeatureWorker


def main(argv: list[str] | None = None) -> None:
    parser = argparse.ArgumentParser(prog="python -m features.streaming")
    sub = parser.add_subparsers(dest="command", required=True)
    worker = sub.add_parser("worker", help="keep the real-time views fresh from the stream's engagements")
    worker.add_argument("--partitions", default=None, help="the stream partitions this worker owns, e.g. 0,2 "
                        "(default: all)")
    worker.add_argument("--batch", type=int, default=500, help="entries read per partition per poll")
    worker.add_argument("--linger-ms", type=int, default=LINGER_MS, help="after a poll with no partition's batch "
                        "full, wait this long from its start before the next: fewer, larger polls")
    args = parser.parse_args(argv)

    settings = get_settings()
    try:
        stream = ValkeyStream.of(settings)
    except FAILURES as exc:
        if not is_outage(exc):
            raise
        sys.exit(f"no event stream at {settings.stream_endpoint} ({exc}): start one (make run keeps its embedded "
                 "one up with LOUPE_SERVE=1) or set LOUPE_STREAM_URL")
    owned = None if args.partitions is None else [int(p) for p in args.partitions.split(",")]
    name = "features-all" if owned is None else "features-p" + ".".join(map(str, owned))
    vocabulary = settings.log_vocabulary()
    consumer = StreamFeatureWorker(stream, feature_store(settings, settings.redis_endpoint), name=name,
                                   batch=args.batch, linger_ms=args.linger_ms, partitions=owned,
                                   vocabulary=vocabulary)
    print(f"stream feature worker on {settings.stream_endpoint} (group {GROUP}) writing to "
          f"{settings.redis_endpoint}; Ctrl-C stops it", flush=True)
    consumer.run(stop_on_signals())  # SIGTERM or Ctrl-C: the poll in progress ends, the leases go back


if __name__ == "__main__":
    main()
