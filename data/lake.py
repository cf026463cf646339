"""Where things live in the workspace: the landing folder and the Parquet lake.

landing/<log_type>/<YYYY-MM-DD>/*.jsonl     exporters drop files here, one folder per landing day
lake/<table>/dt=<YYYY-MM-DD>/*.parquet      validated rows of that landing day
lake/quarantine/<table>/dt=<YYYY-MM-DD>/    rejected lines with the reason, never silently lost
"""

from __future__ import annotations

from pathlib import Path

LANDING_SUFFIXES = (".jsonl", ".json")


def landing_day_dir(landing_dir: Path, log_type: str, day: str) -> Path:
    return Path(landing_dir) / log_type / day


def landing_files(landing_dir: Path, log_type: str, day: str) -> list[Path]:
    """The landing files of one log and day, sorted so reads are deterministic."""
    folder = landing_day_dir(landing_dir, log_type, day)
    if not folder.is_dir():
        return []
    return sorted(p for p in folder.iterdir() if p.is_file() and p.suffix in LANDING_SUFFIXES)


def table_dir(lake_dir: Path, table: str) -> Path:
    return Path(lake_dir) / table


def partition_dir(lake_dir: Path, table: str, day: str) -> Path:
    return table_dir(lake_dir, table) / f"dt={day}"


def quarantine_dir(lake_dir: Path, table: str, day: str) -> Path:
    return Path(lake_dir) / "quarantine" / table / f"dt={day}"


def partition_days(lake_dir: Path, table: str) -> list[str]:
    """Days that have a written partition (a `_SUCCESS` marker from the Spark commit)."""
    root = table_dir(lake_dir, table)
    if not root.is_dir():
        return []
    return sorted(
        p.name.removeprefix("dt=")
        for p in root.iterdir()
        if p.name.startswith("dt=") and (p / "_SUCCESS").exists()
    )
