"""Challenger vs champion on the same test day: the challenger takes `champion` only if its metric
is finite and beats the champion's by more than `min_improvement`. A NaN is never promoted."""

from __future__ import annotations

import math
from dataclasses import asdict, dataclass


@dataclass(frozen=True)
class Decision:
    promoted: bool
    reason: str
    metric: str
    test_day: str
    challenger_version: str
    challenger_metric: float
    champion_version: str | None
    champion_metric: float | None

    def to_dict(self) -> dict:
        return asdict(self)


def decide(
    *,
    metric: str,
    test_day: str,
    challenger_version: str,
    challenger_metric: float,
    champion_version: str | None,
    champion_metric: float | None,
    min_improvement: float = 0.0,
) -> Decision:
    def made(promoted: bool, reason: str) -> Decision:
        return Decision(promoted, reason, metric, test_day, challenger_version, challenger_metric,
                        champion_version, champion_metric)

    if challenger_metric is None or not math.isfinite(challenger_metric):
        return made(False, f"challenger {metric} is not a number ({challenger_metric})")
    if champion_version is None:
        return made(True, "no champion yet")
    if champion_metric is None or not math.isfinite(champion_metric):
        return made(True, f"champion {metric} cannot be computed on this test day ({champion_metric})")
    if challenger_metric > champion_metric + min_improvement:
        return made(True, f"challenger {challenger_metric:.5f} beats champion {champion_metric:.5f}")
    return made(False, f"challenger {challenger_metric:.5f} does not beat champion {champion_metric:.5f}"
                       f" by more than {min_improvement}")
