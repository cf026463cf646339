"""The promotion gate, on one test day and one metric (realised NDCG@10 by default):

1. the challenger's metric is a number (a NaN is never promoted);
2. it beats every non-learned baseline the gate names (chronological order AND popularity) by
   more than `baseline_margin`: a model worse than sorting by time is never champion, even when
   there is no champion yet;
3. it beats the current champion, when there is one that can be scored, by more than
   `min_improvement`.

Otherwise nothing is promoted (with no champion the service keeps its heuristic). The reason always
names the numbers it compared.
"""

from __future__ import annotations

import math
from collections.abc import Mapping
from dataclasses import asdict, dataclass

GATE_BASELINES = ("chronological", "popularity")


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
    baseline_metrics: dict[str, float]
    baseline_margin: float
    min_improvement: float

    def to_dict(self) -> dict:
        """Flat: `<baseline>_metric` beside the challenger's and champion's (MLflow, check metadata)."""
        flat = asdict(self)
        flat.update({f"{name}_metric": value for name, value in flat.pop("baseline_metrics").items()})
        return flat


def _finite(x: float | None) -> bool:
    return x is not None and math.isfinite(x)


def decide(
    *,
    metric: str,
    test_day: str,
    challenger_version: str,
    challenger_metric: float,
    champion_version: str | None,
    champion_metric: float | None,
    baseline_metrics: Mapping[str, float],
    baseline_margin: float = 0.0,
    min_improvement: float = 0.0,
) -> Decision:
    missing = [b for b in GATE_BASELINES if b not in baseline_metrics]
    if missing:
        raise ValueError(f"the promotion gate needs the {missing} baselines' {metric}")
    baselines = {b: float(baseline_metrics[b]) for b in GATE_BASELINES}

    def made(promoted: bool, reason: str) -> Decision:
        return Decision(promoted, reason, metric, test_day, challenger_version, challenger_metric,
                        champion_version, champion_metric, baselines, baseline_margin, min_improvement)

    against = ", ".join(f"{b} {v:.5f}" for b, v in baselines.items())
    if not _finite(challenger_metric):
        return made(False, f"challenger {metric} is not a number ({challenger_metric}); baselines: {against}")
    unknown = [b for b, v in baselines.items() if not math.isfinite(v)]
    if unknown:
        return made(False, f"baseline {metric} cannot be computed on this test day ({against}): not judged")
    losing = [b for b, v in baselines.items() if not challenger_metric > v + baseline_margin]
    if losing:
        return made(False, f"challenger {challenger_metric:.5f} does not beat {' and '.join(losing)} by more than "
                           f"{baseline_margin} ({against})")
    beats = f"challenger {challenger_metric:.5f} beats {against} by more than {baseline_margin}"
    if champion_version is None:
        return made(True, f"{beats}; no champion yet")
    if not _finite(champion_metric):
        return made(True, f"{beats}; champion v{champion_version} cannot be scored on this test day "
                          f"({champion_metric})")
    if challenger_metric > champion_metric + min_improvement:
        return made(True, f"{beats} and champion v{champion_version} {champion_metric:.5f}")
    return made(False, f"challenger {challenger_metric:.5f} does not beat champion v{champion_version} "
                       f"{champion_metric:.5f} by more than {min_improvement} (it beats {against})")
