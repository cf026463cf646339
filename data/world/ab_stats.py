"""The confidence intervals live mode reports: a per-session metric of one arm, and the difference
and relative lift between two arms.

The service assigns arms by viewer (serving.experiment), and one viewer's sessions are not
independent of each other, so the viewer is the unit: a per-session metric of an arm is the ratio
of two sums over its viewers,

    R = Σ_v Y_v / Σ_v N_v            Y_v: viewer v's total (engagements, truth value), N_v: their sessions

and its variance is the delta method's over the n viewers (Deng, Knoblich & Lu 2018, "Applying the
delta method in metric analytics"; what A/B platforms use for ratio metrics):

    Var(R) ≈ (s²_Y − 2 R s_YN + R² s²_N) / (n · N̄²)       s: sample (co)variances over viewers

With one session per viewer this is the variance of a plain per-session mean. The arms are
independent samples, so the difference D = R_t − R_c has variance Var_t + Var_c, and the relative
lift L = R_t / R_c − 1 (delta method again) Var_t / R_c² + R_t² Var_c / R_c⁴. Every interval is
normal: estimate ± 1.96 · sd (95 %). Fewer than two viewers: no interval (nan).
"""

from __future__ import annotations

import math
from dataclasses import dataclass

import numpy as np

Z95 = 1.959963984540054  # the standard normal's 97.5 % quantile


@dataclass(frozen=True)
class ArmMetric:
    """A per-session metric of one arm: its estimate and the estimate's variance."""

    mean: float
    var: float
    viewers: int
    sessions: int

    @property
    def ci95(self) -> float:
        """Half the 95 % interval's width."""
        return Z95 * math.sqrt(self.var) if self.var >= 0 else math.nan


def per_session(values: np.ndarray, viewers: np.ndarray) -> ArmMetric:
    """The mean per session of `values` (one per session), with sessions clustered by `viewers`."""
    values = np.asarray(values, dtype=np.float64)
    if len(values) == 0:
        return ArmMetric(math.nan, math.nan, 0, 0)
    _, cluster = np.unique(np.asarray(viewers), return_inverse=True)
    y = np.bincount(cluster, weights=values)  # per viewer: total
    s = np.bincount(cluster).astype(np.float64)  # per viewer: sessions
    n = len(y)
    ratio = y.sum() / s.sum()
    if n < 2:
        return ArmMetric(float(ratio), math.nan, n, len(values))
    cov = np.cov(y, s, ddof=1)
    var = (cov[0, 0] - 2 * ratio * cov[0, 1] + ratio**2 * cov[1, 1]) / (n * s.mean() ** 2)
    return ArmMetric(float(ratio), float(max(var, 0.0)), n, len(values))


@dataclass(frozen=True)
class Comparison:
    """Treatment against control: the difference and the relative lift, each with its 95 % interval."""

    diff: float
    diff_ci95: float  # half width
    lift: float  # R_t / R_c - 1
    lift_low: float
    lift_high: float


def compare(treatment: ArmMetric, control: ArmMetric) -> Comparison:
    t, c = treatment, control
    diff = t.mean - c.mean
    diff_half = Z95 * math.sqrt(t.var + c.var)
    if c.mean == 0 or math.isnan(c.mean):
        return Comparison(diff, diff_half, math.nan, math.nan, math.nan)
    lift = t.mean / c.mean - 1.0
    lift_half = Z95 * math.sqrt(t.var / c.mean**2 + t.mean**2 * c.var / c.mean**4)
    return Comparison(diff, diff_half, lift, lift - lift_half, lift + lift_half)


def sample_ratio_p(treated: int, control: int, share: float) -> float:
    """Two-sided p-value that the arms' counts came from a split at `share` (normal approximation of
    the binomial): a small one (< 0.001) is a sample ratio mismatch, a broken split or a broken
    count, and the lift cannot be trusted whatever its interval says."""
    n = treated + control
    if n == 0 or not 0.0 < share < 1.0:
        return math.nan
    z = (treated - n * share) / math.sqrt(n * share * (1.0 - share))
    return math.erfc(abs(z) / math.sqrt(2.0))
