"""The log vocabulary (`data/vocabulary.toml`): engagement types with their role in labels, and
impression sources. Parsed and validated once; ingestion takes its enums from here and training its
label heads, so a team's export with other action names (a click-only log, a `view` event) fits by
configuration, not code.
"""

from __future__ import annotations

import tomllib
from dataclasses import dataclass
from functools import lru_cache
from pathlib import Path
from typing import Literal

DEFAULT_PATH = Path(__file__).with_name("vocabulary.toml")
ROLES = ("positive", "negative", "dwell", "neutral")
Role = Literal["positive", "negative", "dwell", "neutral"]


@dataclass(frozen=True)
class EngagementType:
    name: str
    role: Role
    head: str | None  # the value-model head it labels; None for neutral types


@dataclass(frozen=True)
class Vocabulary:
    engagement_types: dict[str, EngagementType]
    impression_sources: tuple[str, ...]
    long_dwell_ms: int
    source: str = str(DEFAULT_PATH)

    @property
    def engagement_names(self) -> tuple[str, ...]:
        return tuple(self.engagement_types)

    def names_with_role(self, *roles: Role) -> tuple[str, ...]:
        return tuple(n for n, t in self.engagement_types.items() if t.role in roles)

    @property
    def heads(self) -> tuple[str, ...]:
        """Every head some type labels, in declaration order (positive heads, then negative)."""
        ordered = [t.head for t in self.engagement_types.values() if t.head and t.role != "negative"]
        ordered += [t.head for t in self.engagement_types.values() if t.head and t.role == "negative"]
        return tuple(dict.fromkeys(ordered))

    def head_of(self, engagement_type: str, value: float | None = None) -> str | None:
        """The head one engagement labels: None for unknown and neutral types and short dwells."""
        kind = self.engagement_types.get(engagement_type)
        if kind is None or kind.head is None:
            return None
        if kind.role == "dwell" and not (value is not None and value >= self.long_dwell_ms):
            return None
        return kind.head

    @classmethod
    def load(cls, path: Path | str | None = None) -> Vocabulary:
        path = Path(path or DEFAULT_PATH)
        try:
            raw = tomllib.loads(path.read_text())
        except (OSError, tomllib.TOMLDecodeError) as exc:
            raise ValueError(f"log vocabulary {path}: {exc}") from exc
        types: dict[str, EngagementType] = {}
        for name, spec in raw.get("engagement_types", {}).items():
            role = spec.get("role")
            if role not in ROLES:
                raise ValueError(f"{path}: engagement type {name!r}: role must be one of {ROLES}, got {role!r}")
            head = spec.get("head")
            if role == "neutral" and head:
                raise ValueError(f"{path}: engagement type {name!r} is neutral and cannot label head {head!r}")
            if role != "neutral" and not head:
                raise ValueError(f"{path}: engagement type {name!r} ({role}) needs a `head`")
            types[name] = EngagementType(name, role, head or None)
        if not types:
            raise ValueError(f"{path}: [engagement_types] is empty")
        negative_heads = {t.head for t in types.values() if t.role == "negative"}
        mixed = negative_heads & {t.head for t in types.values() if t.role != "negative"}
        if mixed:
            raise ValueError(f"{path}: heads {sorted(mixed)} are labelled by both negative and other types")
        sources = tuple(raw.get("impressions", {}).get("sources", ()))
        if not sources or len(set(sources)) != len(sources):
            raise ValueError(f"{path}: [impressions] sources must be a non-empty list without repeats")
        long_dwell = int(raw.get("long_dwell_ms", 10_000))
        if long_dwell <= 0:
            raise ValueError(f"{path}: long_dwell_ms must be positive")
        return cls(types, sources, long_dwell, str(path))


@lru_cache(maxsize=8)
def load_vocabulary(path: str | None = None) -> Vocabulary:
    """The vocabulary at `path` (default: the shipped one), parsed once per process."""
    return Vocabulary.load(path)
