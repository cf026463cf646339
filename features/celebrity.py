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
from pathlib import Path
from typing import Any

import numpy as np
from pydantic import Field, field_validator

from data.typed_config import ConfigModel

DEFAULT_PATH = Path(__file__).with_name("config.toml")


class CelebrityRule(ConfigModel):
    followers: int | None = Field(None, ge=1)  # fixed threshold; None: derived from the distribution
    percentile: float = Field(99.0, ge=0.0, le=100.0)
    min_followers: int = Field(100, ge=1)

    @field_validator("followers", mode="before")
    @classmethod
    def _empty_is_derived(cls, value: Any) -> Any:
        return None if value == "" else value  # TOML has no null: `followers = ""` means not fixed

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
        return cls.parse(section, "[celebrity]")

    @classmethod
    def load(cls, path: Path | str | None = None) -> CelebrityRule:
        with open(path or DEFAULT_PATH, "rb") as f:
            return cls.from_section(tomllib.load(f).get("celebrity", {}))
