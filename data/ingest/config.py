"""Ingestion settings (`data/ingest/config.toml`, section `[ingest]`), parsed once."""

from __future__ import annotations

import tomllib
from pathlib import Path

from pydantic import Field

from data.typed_config import ConfigModel

DEFAULT_PATH = Path(__file__).with_name("config.toml")


class IngestConfig(ConfigModel):
    max_line_bytes: int = Field(1 << 20, ge=1)  # longer lines are quarantined as line_too_long


def load_ingest_config(path: Path | str | None = None) -> IngestConfig:
    path = Path(path or DEFAULT_PATH)
    try:
        raw = tomllib.loads(path.read_text())
    except (OSError, tomllib.TOMLDecodeError) as exc:
        raise ValueError(f"ingest config {path}: {exc}") from exc
    return IngestConfig.parse(raw.get("ingest", {}), f"ingest config {path} [ingest]")
