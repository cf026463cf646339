"""Ingestion settings (`data/ingest/config.toml`, section `[ingest]`), parsed once."""

from __future__ import annotations

import tomllib
from dataclasses import dataclass
from pathlib import Path

DEFAULT_PATH = Path(__file__).with_name("config.toml")


@dataclass(frozen=True)
class IngestConfig:
    max_line_bytes: int = 1 << 20  # longer lines are quarantined as line_too_long

    def __post_init__(self) -> None:
        if not isinstance(self.max_line_bytes, int) or self.max_line_bytes < 1:
            raise ValueError(f"[ingest] max_line_bytes must be a positive integer, got {self.max_line_bytes!r}")


def load_ingest_config(path: Path | str | None = None) -> IngestConfig:
    path = Path(path or DEFAULT_PATH)
    try:
        raw = tomllib.loads(path.read_text()).get("ingest", {})
    except (OSError, tomllib.TOMLDecodeError) as exc:
        raise ValueError(f"ingest config {path}: {exc}") from exc
    unknown = set(raw) - {"max_line_bytes"}
    if unknown:
        raise ValueError(f"{path}: unknown [ingest] keys {sorted(unknown)}")
    try:
        return IngestConfig(**raw)
    except ValueError as exc:
        raise ValueError(f"{path}: {exc}") from exc
