"""What changed in a landing folder: one fingerprint per day, for the landing sensor to compare."""

from __future__ import annotations

import hashlib
from collections.abc import Iterable
from pathlib import Path

from data import lake
from data.contracts import LOG_TYPES


def landing_fingerprints(landing_dir: Path, days: Iterable[str] | None = None) -> dict[str, str]:
    """Day -> a hash of the names, sizes and mtimes of everything in its landing folders (files
    ingestion ignores too: they fail the day's check), across logs. `days`: only these (None: every
    day folder)."""
    wanted = None if days is None else set(days)
    by_day: dict[str, list[str]] = {}
    for log_type in LOG_TYPES:
        root = Path(landing_dir) / log_type
        if not root.is_dir():
            continue
        for day_dir in root.iterdir():
            if wanted is not None and day_dir.name not in wanted:
                continue
            for path in lake.landing_files(landing_dir, log_type, day_dir.name):
                try:
                    stat = path.stat()
                except OSError:  # a broken link: ingestion names it as ignored
                    stat = path.lstat()
                by_day.setdefault(day_dir.name, []).append(
                    f"{log_type}/{path.name}:{stat.st_size}:{stat.st_mtime_ns}"
                )
    return {
        day: hashlib.sha1("\n".join(sorted(items)).encode()).hexdigest()[:16]
        for day, items in by_day.items()
    }
