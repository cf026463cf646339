"""`python -m data.stream status|archive`: the event stream of this workspace's settings.

    status   entries held, each consumer group's backlog, lines archived per log and day
    archive  land every entry not yet archived into the landing folder, trim what is archived
"""

from __future__ import annotations

import dataclasses
import json
import sys

from data.settings import get_settings
from data.stream.archiver import ArchiverBusy, StreamArchiver
from data.stream.valkey_stream import ValkeyStream


def main(argv: list[str]) -> None:
    if argv not in (["status"], ["archive"]):
        sys.exit(__doc__)
    settings = get_settings()
    stream = ValkeyStream.of(settings)
    archiver = StreamArchiver(stream, settings.landing_dir)
    if argv == ["archive"]:
        try:
            report = archiver.archive()
        except ArchiverBusy as exc:
            sys.exit(str(exc))
        print(f"archived {report.entries} entries into {settings.landing_dir}, trimmed {report.trimmed}")
        return
    print(json.dumps({
        "entries": stream.length(),
        "backlog": {g: dataclasses.asdict(lag) for g, lag in stream.lags().items()},
        "archived_lines": archiver.archived_lines(),
    }, indent=2))


if __name__ == "__main__":
    main(sys.argv[1:])
