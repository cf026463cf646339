"""Who is a celebrity: one rule (features/config.toml [celebrity]) used by the author feature job
(`is_celebrity`, Spark) and by candidate generation (celebrities are pulled at read time instead of
fanned out, Redis), so the model's notion and the feed's are the same accounts.

An account is a celebrity when its active follower count is at least `threshold(counts)`: the fixed
`followers` when set, else the `percentile` of the follower counts of accounts that have followers,
rounded up, floored at `min_followers`. The distribution is taken as a histogram (count -> accounts
with it): Spark sends a few thousand distinct counts to the driver instead of one row per account,
and both callers compute the percentile with this same code.
"""

from __future__ import annotations

import math
import tomllib
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import numpy as np

DEFAULT_PATH = Path(__file__).with_name("config.toml")


@dataclass(frozen=True)
class CelebrityRule:
    followers: int | None = None  # fixed threshold; None: derived from the distribution
    percentile: float = 99.0
    min_followers: int = 100

    def __post_init__(self) -> None:
        if not 0.0 <= self.percentile <= 100.0:
            raise ValueError(f"celebrity percentile must be within [0, 100], got {self.percentile}")
        if self.min_followers < 1 or (self.followers is not None and self.followers < 1):
            raise ValueError("celebrity followers and min_followers must be at least 1")

    def threshold(self, follower_counts: np.ndarray) -> int:
        """The threshold for one follower count per account (zeros allowed: they do not count)."""
        counts = np.asarray(follower_counts, dtype=np.int64)
        values, accounts = np.unique(counts[counts > 0], return_counts=True)
        return self.threshold_from_histogram(values, accounts)

    def threshold_from_histogram(self, values: np.ndarray, accounts: np.ndarray) -> int:
        """The threshold from a histogram: `accounts[i]` accounts have `values[i]` followers."""
        if self.followers is not None:
            return int(self.followers)
        values, accounts = np.asarray(values, dtype=np.int64), np.asarray(accounts, dtype=np.int64)
        keep = (values > 0) & (accounts > 0)
        values, accounts = values[keep], accounts[keep]
        if not len(values):
            return self.min_followers
        order = np.argsort(values)
        values, ends = values[order], np.cumsum(accounts[order])  # ends[i]: accounts up to values[i]
        # numpy's default ("linear") percentile of the expanded counts, without expanding them
        rank = self.percentile / 100.0 * (ends[-1] - 1)
        below, above = math.floor(rank), math.ceil(rank)
        lo = values[np.searchsorted(ends, below, side="right")]
        hi = values[np.searchsorted(ends, above, side="right")]
        derived = math.ceil(lo + (hi - lo) * (rank - below))
        return max(int(derived), self.min_followers)

    @classmethod
    def from_section(cls, section: dict[str, Any]) -> CelebrityRule:
        unknown = set(section) - {"followers", "percentile", "min_followers"}
        if unknown:
            raise ValueError(f"unknown [celebrity] settings: {sorted(unknown)}")
        fixed = section.get("followers", "")
        return cls(
            followers=None if fixed in ("", None) else int(fixed),
            percentile=float(section.get("percentile", cls.percentile)),
            min_followers=int(section.get("min_followers", cls.min_followers)),
        )

    @classmethod
    def load(cls, path: Path | str | None = None) -> CelebrityRule:
        with open(path or DEFAULT_PATH, "rb") as f:
            return cls.from_section(tomllib.load(f).get("celebrity", {}))
