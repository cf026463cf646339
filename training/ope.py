"""Off-policy evaluation: what a target ranker would earn, estimated from logs another policy made.

The unit of data is a **logged slot**: one served (request, position, item) with its reward (e.g.
1 if the viewer engaged) and the logging policy's propensity `p` = P(this item at this position |
request) under the policy that served it (`impressions.propensity`). A target policy is judged by
its probability `pi` of putting the same item at the same position (item-position model: the
reward of a slot depends on the item and its position, not on the other items of the page), so

    IPS   V = 1/U  sum_slots  w r,                          w = pi / p
    SNIPS V = 1/U  sum_k  n_k * (sum_{slots at k} w r) / (sum_{slots at k} w)
    DR    V = 1/U  sum_slots  [ q_target + w (r - q_logged) ]

where U is the number of units the value is expressed per (requests: engagements per request;
slots: engagements per slot, a CTR), n_k the slots logged at position k, q a reward model
(`CrossFitTable`): q_logged its prediction for the logged item at its position, q_target the
target's expected prediction at that position (sum_i pi(i at k) q(i, k)). SNIPS normalises the
weights of each position to mean 1 (E[w] = 1 per position under the logging policy when the target
fills the position); DR keeps IPS's unbiasedness and removes the variance the reward model explains.
All three are unbiased (SNIPS consistent) only where the logging policy could have shown the
target's item at the target's position (p > 0): a deterministic logging policy supports nothing but
itself, hence the service's exploration share (docs/serving.md).

Confidence intervals: Poisson bootstrap over clusters (a request, or a viewer when one viewer's
requests are not independent), percentile 95 %; the same replicate weights serve every estimator
and both arms of a lift, so a lift's interval accounts for their correlation.
"""

from __future__ import annotations

from dataclasses import dataclass

import numpy as np

ESTIMATORS = ("ips", "snips", "dr")
BOOTSTRAP_REPLICATES = 500
_CHUNK = 50  # bootstrap replicates drawn at once: (chunk x clusters) weights in memory


@dataclass(frozen=True)
class SlotLog:
    """Logged slots, all arrays aligned (one entry per served (request, position, item))."""

    unit: np.ndarray  # what the value is expressed per (request codes, or arange for per slot)
    cluster: np.ndarray  # bootstrap unit; each unit lies in exactly one cluster
    position: np.ndarray  # 0-based position of the slot
    item: np.ndarray  # int64 item (post) id
    reward: np.ndarray  # float reward of the slot (1.0 engaged / 0.0 not, or a count)
    propensity: np.ndarray  # logging P(item at position | unit); must be in (0, 1]

    def __post_init__(self) -> None:
        n = len(self.reward)
        for name in ("unit", "cluster", "position", "item", "propensity"):
            if len(getattr(self, name)) != n:
                raise ValueError(f"SlotLog.{name} has {len(getattr(self, name))} entries, reward has {n}")
        if n == 0:
            raise ValueError("off-policy evaluation needs at least one logged slot")
        p = np.asarray(self.propensity, dtype=np.float64)
        bad = ~np.isfinite(p) | (p <= 0) | (p > 1)
        if bad.any():
            raise ValueError(f"{int(bad.sum())} logged slots have a propensity outside (0, 1] "
                             f"(e.g. {p[bad][:3].tolist()}): a logged item had to be possible")
        if not np.isfinite(np.asarray(self.reward, dtype=np.float64)).all():
            raise ValueError("rewards must be finite")
        if np.asarray(self.position).min() < 0:
            raise ValueError("positions are 0-based")

    @classmethod
    def build(cls, *, unit, position, item, reward, propensity, cluster=None) -> SlotLog:
        """Codes for `unit`/`cluster` (any hashable values); cluster defaults to the unit."""
        unit_codes = _codes(unit)
        cluster_codes = unit_codes if cluster is None else _codes(cluster)
        return cls(unit_codes, cluster_codes, np.asarray(position, dtype=np.int64),
                   np.asarray(item, dtype=np.int64), np.asarray(reward, dtype=np.float64),
                   np.asarray(propensity, dtype=np.float64))

    @property
    def n_slots(self) -> int:
        return len(self.reward)

    @property
    def n_units(self) -> int:
        return len(np.unique(self.unit))


@dataclass(frozen=True)
class Target:
    """A target policy as seen from the log: per logged slot, pi(logged item at logged position)
    and, for DR, the reward model at the logged slot and the target's expected reward there."""

    name: str
    prob: np.ndarray
    q_logged: np.ndarray | None = None
    q_target: np.ndarray | None = None

    @classmethod
    def from_slate(cls, name: str, log: SlotLog, *, unit, position, item, q_slate=None,
                   q_logged=None) -> Target:
        """A deterministic target: the slate it would serve, one (unit, position, item) row per slot
        it fills (units must use the log's codes: see `unit_codes_like`). pi = 1 where the logged
        slot holds the target's item, else 0; q_target = q_slate of the target's item there."""
        unit, position, item = (np.asarray(a, dtype=np.int64) for a in (unit, position, item))
        if len(unit) == 0:
            raise ValueError(f"target {name!r} serves no slot")
        width = int(max(position.max(), log.position.max()) + 1)
        slate_key = unit * width + position
        order = np.argsort(slate_key, kind="stable")
        slate_key, slate_item = slate_key[order], item[order]
        if (np.diff(slate_key) == 0).any():
            raise ValueError(f"target {name!r} puts two items at one (unit, position)")
        logged_key = log.unit * width + log.position
        at = np.minimum(np.searchsorted(slate_key, logged_key), len(slate_key) - 1)
        filled = slate_key[at] == logged_key  # the target serves this logged slot's position
        prob = (filled & (slate_item[at] == log.item)).astype(np.float64)
        q_target = None
        if q_slate is not None:
            q_target = np.where(filled, np.asarray(q_slate, dtype=np.float64)[order][at], 0.0)
        return cls(name, prob, None if q_logged is None else np.asarray(q_logged, np.float64), q_target)


@dataclass(frozen=True)
class Estimate:
    estimator: str
    value: float
    ci95: tuple[float, float]
    se: float
    n_units: int
    n_slots: int
    matched_slots: int  # slots where the target agrees with the log (pi > 0)
    ess: float  # effective sample size of the importance weights, (sum w)^2 / sum w^2
    max_weight: float

    def to_dict(self) -> dict:
        return {"value": self.value, "ci95": list(self.ci95), "se": self.se, "n_units": self.n_units,
                "n_slots": self.n_slots, "matched_slots": self.matched_slots, "ess": self.ess,
                "max_weight": self.max_weight}

    def covers(self, truth: float) -> bool:
        return self.ci95[0] <= truth <= self.ci95[1]


def _codes(values) -> np.ndarray:
    return np.unique(np.asarray(values), return_inverse=True)[1].astype(np.int64)


def unit_codes_like(log_units_raw, other_units_raw) -> np.ndarray:
    """Codes of `other_units_raw` in the code space SlotLog.build gave `log_units_raw`; units the log
    never saw get -1 (they cannot match a logged slot)."""
    uniq = np.unique(np.asarray(log_units_raw))
    other = np.asarray(other_units_raw)
    at = np.searchsorted(uniq, other)
    at_c = np.minimum(at, len(uniq) - 1)
    return np.where((at < len(uniq)) & (uniq[at_c] == other), at_c, -1).astype(np.int64)


# --- the estimators -----------------------------------------------------------------------------
class _Sums:
    """Per-cluster sums the estimators (and every bootstrap replicate of them) are built from."""

    def __init__(self, log: SlotLog, target: Target):
        w = np.asarray(target.prob, dtype=np.float64) / log.propensity
        if len(w) != log.n_slots:
            raise ValueError(f"target {target.name!r} has {len(w)} slot probabilities for {log.n_slots} slots")
        if (w < 0).any() or not np.isfinite(w).all():
            raise ValueError(f"target {target.name!r}: probabilities must be finite and >= 0")
        self.w = w
        c = log.cluster
        n_c = int(c.max()) + 1
        self.n_clusters = n_c
        pairs = np.unique(np.stack([c, log.unit]), axis=1)
        self.units = np.bincount(pairs[0], minlength=n_c).astype(np.float64)
        self.ips = np.bincount(c, w * log.reward, minlength=n_c)
        k = log.position
        n_k = int(k.max()) + 1
        flat = c * n_k + k
        size = n_c * n_k
        self.wr = np.bincount(flat, w * log.reward, minlength=size).reshape(n_c, n_k)
        self.wsum = np.bincount(flat, w, minlength=size).reshape(n_c, n_k)
        self.count = np.bincount(flat, minlength=size).reshape(n_c, n_k).astype(np.float64)
        self.dr = None
        if target.q_logged is not None and target.q_target is not None:
            dr = target.q_target + w * (log.reward - target.q_logged)
            self.dr = np.bincount(c, dr, minlength=n_c)

    def value(self, estimator: str, weights: np.ndarray | None) -> np.ndarray:
        """Estimates under cluster weights (rows of `weights`; None = the data as logged)."""
        W = np.ones((1, self.n_clusters)) if weights is None else weights
        units = W @ self.units
        if estimator == "ips":
            num = W @ self.ips
        elif estimator == "dr":
            if self.dr is None:
                raise ValueError("DR needs q_logged and q_target on the target")
            num = W @ self.dr
        elif estimator == "snips":
            wr, ws, n = W @ self.wr, W @ self.wsum, W @ self.count
            with np.errstate(invalid="ignore", divide="ignore"):
                per_position = np.where(ws > 0, wr / ws, 0.0) * n
            num = per_position.sum(axis=1)
        else:
            raise ValueError(f"unknown estimator {estimator!r}; one of {ESTIMATORS}")
        with np.errstate(invalid="ignore", divide="ignore"):
            return num / units


def _replicate_weights(n_clusters: int, replicates: int, seed: int):
    rng = np.random.default_rng(seed)
    done = 0
    while done < replicates:
        b = min(_CHUNK, replicates - done)
        yield rng.poisson(1.0, (b, n_clusters)).astype(np.float64)
        done += b


def estimate(log: SlotLog, target: Target, estimators=ESTIMATORS, *, replicates: int = BOOTSTRAP_REPLICATES,
             seed: int = 0) -> dict[str, Estimate]:
    """The target's value per unit under each estimator, with bootstrap 95 % intervals."""
    estimators = tuple(e for e in estimators if e != "dr" or target.q_logged is not None)
    sums = _Sums(log, target)
    point = {e: float(sums.value(e, None)[0]) for e in estimators}
    reps: dict[str, list[np.ndarray]] = {e: [] for e in estimators}
    for W in _replicate_weights(sums.n_clusters, replicates, seed):
        for e in estimators:
            reps[e].append(sums.value(e, W))
    w = sums.w
    ess = float(w.sum() ** 2 / (w ** 2).sum()) if (w > 0).any() else 0.0
    out = {}
    for e in estimators:
        r = np.concatenate(reps[e])
        r = r[np.isfinite(r)]
        out[e] = Estimate(e, point[e], (float(np.quantile(r, 0.025)), float(np.quantile(r, 0.975))),
                          float(r.std(ddof=1)), log.n_units, log.n_slots, int((w > 0).sum()), ess,
                          float(w.max()))
    return out


def lift(log: SlotLog, treatment: Target, control: Target, estimators=ESTIMATORS, *,
         replicates: int = BOOTSTRAP_REPLICATES, seed: int = 0) -> dict[str, dict]:
    """Relative lift of treatment over control, in percent, per estimator, with a 95 % interval
    from the same bootstrap replicates for both arms (both are judged on the same log)."""
    both_dr = treatment.q_logged is not None and control.q_logged is not None
    estimators = tuple(e for e in estimators if e != "dr" or both_dr)
    st, sc = _Sums(log, treatment), _Sums(log, control)
    out: dict[str, dict] = {}
    reps: dict[str, list[np.ndarray]] = {e: [] for e in estimators}
    for W in _replicate_weights(st.n_clusters, replicates, seed):
        for e in estimators:
            with np.errstate(invalid="ignore", divide="ignore"):
                reps[e].append(100.0 * (st.value(e, W) / sc.value(e, W) - 1.0))
    for e in estimators:
        vt, vc = float(st.value(e, None)[0]), float(sc.value(e, None)[0])
        r = np.concatenate(reps[e])
        r = r[np.isfinite(r)]
        out[e] = {"treatment": vt, "control": vc, "lift_pct": 100.0 * (vt / vc - 1.0),
                  "ci95_pct": [float(np.quantile(r, 0.025)), float(np.quantile(r, 0.975))],
                  "se_pct": float(r.std(ddof=1))}
    return out


# --- a reward model for DR ------------------------------------------------------------------------
def folds(cluster: np.ndarray, n_folds: int = 2, seed: int = 0) -> np.ndarray:
    """A fold per cluster (random, seeded): cross-fitting keeps a slot's own reward out of its q."""
    per_cluster = np.random.default_rng(seed).integers(0, n_folds, int(np.max(cluster)) + 1)
    return per_cluster[np.asarray(cluster)]


class CrossFitTable:
    """Mean reward per (key, position), shrunk toward the position's mean (prior weight `prior`
    pseudo-slots), fitted on the other folds: q(key, position) for a slot of fold f never saw f.

    Keys are any int64 covariate buckets: an item id (Open Bandit), a score decile (a ranker's
    candidates). Unknown keys fall back to the position's mean; unknown positions to the overall."""

    def __init__(self, key: np.ndarray, position: np.ndarray, reward: np.ndarray, fold: np.ndarray,
                 prior: float = 20.0):
        self.prior = prior
        self.n_folds = int(np.max(fold)) + 1
        key, position = np.asarray(key, np.int64), np.asarray(position, np.int64)
        reward, fold = np.asarray(reward, np.float64), np.asarray(fold, np.int64)
        self.keys = np.unique(key)
        self.width = int(position.max()) + 1
        self.tables = []
        for f in range(self.n_folds):
            train = fold != f
            k = np.searchsorted(self.keys, key[train]) * self.width + position[train]
            size = len(self.keys) * self.width
            n = np.bincount(k, minlength=size).astype(np.float64)
            s = np.bincount(k, reward[train], minlength=size)
            n_pos = np.bincount(position[train], minlength=self.width).astype(np.float64)
            s_pos = np.bincount(position[train], reward[train], minlength=self.width)
            overall = s.sum() / max(n.sum(), 1.0)
            pos_mean = np.where(n_pos > 0, s_pos / np.maximum(n_pos, 1.0), overall)
            prior_mean = np.tile(pos_mean, len(self.keys))
            self.tables.append(((s + prior * prior_mean) / (n + prior), pos_mean, overall))

    def predict(self, key: np.ndarray, position: np.ndarray, fold: np.ndarray) -> np.ndarray:
        key, position, fold = (np.asarray(a, np.int64) for a in (key, position, fold))
        out = np.empty(len(key), dtype=np.float64)
        at = np.searchsorted(self.keys, key)
        known = (at < len(self.keys)) & (self.keys[np.minimum(at, len(self.keys) - 1)] == key)
        in_range = position < self.width
        for f in range(self.n_folds):
            rows = fold == f
            table, pos_mean, overall = self.tables[f]
            idx = np.minimum(at[rows], len(self.keys) - 1) * self.width + np.minimum(position[rows], self.width - 1)
            value = np.where(known[rows], table[idx], pos_mean[np.minimum(position[rows], self.width - 1)])
            out[rows] = np.where(in_range[rows], value, overall)
        return out
