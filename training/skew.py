"""Train/serve skew: the feature vectors the ranking service scored against what training sees.

The service logs every impression a model ranked with the model's version (`<model>:<version>`)
and the exact float32 vector it scored, in that model's feature order (serving/stages/
served_impression_logger.py). The order is recorded with the model: each registered version's run
holds `features.json` (training/tracking.py). For a day's served impressions this module asks
training retrieval (`features.retrieval.historical_features`, the Feast point-in-time path
training/dataset.py builds training sets with) for the same (viewer, author, post, request time),
and reports, per feature, the share of rows whose values differ. It retrieves the newest ranking
service, which holds every feature of the ones before: the daily views' and the real-time views'
(whose offline rows the features/realtime asset replays from the lake).

A real-time value reaches the online store some time after its event (the app's batching, the
stream, the processor): what the service scored may be the value of a moment before the request.
A served real-time value that differs from training's as of the request but equals the value it
had at some moment within `stream_delay_s` before is counted as delayed, not as a mismatch; a
definition that differs (a unit, a window) still fails, since no recent value equals it.

Rows without a scored vector (the logging policy, the heuristic, chronological order) have nothing
to compare and are left out; so are vectors whose model version the registry does not know (said
in the report).
"""

from __future__ import annotations

import json
import re
import tempfile
import tomllib
from collections.abc import Callable
from dataclasses import dataclass, field
from datetime import timedelta
from pathlib import Path
from typing import Any

import numpy as np
import pandas as pd
import pyarrow.dataset as ds
from feast import FeatureStore
from pydantic import Field, NonNegativeFloat

from data import columns as c
from data import lake
from data.days import days_after
from data.typed_config import ConfigModel
from features.retrieval import historical_features, realtime_values_since
from features.services import RANKING_SERVICES
from features.tables import EVENT_TIMESTAMP

DEFAULT_PATH = Path(__file__).with_name("skew.toml")
FEATURES_ARTIFACT = "features.json"  # logged with every ranker run: its feature names, in order
MODEL_LABEL = re.compile(r"^(?P<name>[^:\s]+):(?P<version>\d+)$")  # a registered model's name:version

FeatureNames = Callable[[str], list[str] | None]  # model label -> feature order, None: unknown


class SkewConfig(ConfigModel):
    """training/skew.toml: how far served feature values may drift from the training set's."""

    max_mismatch_rate: float = Field(0.01, ge=0.0, le=1.0)  # share of compared rows per feature
    rtol: float = Field(1e-5, ge=0.0)
    atol: float = Field(1e-6, ge=0.0)
    feature_atol: dict[str, NonNegativeFloat] = Field(default_factory=dict)  # per-feature atol
    # real seconds an event may take from the viewer's app through the stream processor to the
    # online store: a served real-time value matches training's if it equals it at some moment of
    # that span before the request (scaled by the clock's speed for a day live mode played faster)
    stream_delay_s: NonNegativeFloat = 5.0
    max_rows: int = Field(5000, ge=1)  # served rows sampled per day
    seed: int = 7
    examples: int = 3  # worst mismatches reported per feature

    @classmethod
    def load(cls, path: Path | str | None = None) -> SkewConfig:
        path = Path(path or DEFAULT_PATH)
        return cls.parse(tomllib.loads(path.read_text()), f"skew config {path}")


@dataclass
class FeatureSkew:
    rows: int = 0
    mismatches: int = 0
    delayed: int = 0  # rows that match only a value of the stream delay before the request
    worst: list[dict[str, Any]] = field(default_factory=list)

    @property
    def rate(self) -> float:
        return self.mismatches / self.rows if self.rows else 0.0


@dataclass
class SkewReport:
    day: str
    max_mismatch_rate: float
    stream_delay_s: float = 0.0  # in the day's event time (the clock's speed applied)
    rows: int = 0  # served rows compared
    requests: int = 0
    scored_rows: int = 0  # served rows with a model's vector, before sampling
    skipped: dict[str, int] = field(default_factory=dict)  # rows left out, by reason
    features: dict[str, FeatureSkew] = field(default_factory=dict)

    @property
    def failing(self) -> list[str]:
        return sorted(n for n, f in self.features.items() if f.rate > self.max_mismatch_rate)

    @property
    def passed(self) -> bool:
        return not self.failing

    @property
    def mismatch_rates(self) -> dict[str, float]:
        return {n: round(f.rate, 6) for n, f in sorted(self.features.items())}

    def summary(self) -> str:
        if not self.rows:
            why = ", ".join(f"{k}: {v}" for k, v in self.skipped.items()) or "no model-scored impressions"
            return f"{self.day}: nothing to compare ({why})"
        worst = sorted(self.features.items(), key=lambda kv: -kv[1].rate)[:3]
        top = ", ".join(f"{n} {f.rate:.1%}" for n, f in worst if f.mismatches)
        verdict = (f"{len(self.failing)} feature(s) over {self.max_mismatch_rate:.2%}" if self.failing
                   else "within tolerance")
        delayed = sum(f.delayed for f in self.features.values())
        late = (f"; {delayed} real-time value(s) matched training's up to {self.stream_delay_s:g} s before "
                f"the request (the stream's delay)" if delayed else "")
        return f"{self.day}: {self.rows} served rows compared, {verdict}" + (f"; worst: {top}" if top else "") + late

    @property
    def delayed_rates(self) -> dict[str, float]:
        """Per feature, the share of rows that matched only a value of the stream's delay before."""
        return {n: round(f.delayed / f.rows, 6) for n, f in sorted(self.features.items()) if f.delayed}


# --- what was served ------------------------------------------------------------------------------
def served_impressions(lake_dir: Path, day: str, cfg: SkewConfig) -> tuple[pd.DataFrame, dict[str, int], int]:
    """Impressions of `day` (by their time; late rows land a day later) that a model scored, with
    their author, sampled by whole requests: (rows, rows left out by reason, scored rows before
    sampling)."""
    scored = lake.ts_on_day(day) & ds.field(c.FEATURES).is_valid() & ds.field(c.MODEL_VERSION).is_valid()
    cols = [c.REQUEST_ID, c.VIEWER_ID, c.POST_ID, c.TS, c.MODEL_VERSION, c.FEATURES]
    rows = lake.read_partitions(lake_dir, "impressions", [day, days_after(day, 1)], cols, scored)
    rows = rows.drop_duplicates([c.REQUEST_ID, c.POST_ID])
    skipped: dict[str, int] = {}
    labelled = rows[c.MODEL_VERSION].astype(str).str.match(MODEL_LABEL.pattern)
    if (~labelled).any():
        skipped["not a registered model's name:version"] = int((~labelled).sum())
    rows = rows[labelled]
    n_scored = len(rows)
    rows = _sample_requests(rows, cfg.max_rows, cfg.seed)

    posts = lake.read_partitions(lake_dir, "posts", lake.partition_days(lake_dir, "posts"), [c.POST_ID, c.AUTHOR_ID])
    posts = posts.drop_duplicates(c.POST_ID)
    out = rows.merge(posts, on=c.POST_ID, how="inner")
    if len(out) < len(rows):
        skipped["post unknown to the lake"] = len(rows) - len(out)
    return out.sort_values([c.REQUEST_ID, c.POST_ID]).reset_index(drop=True), skipped, n_scored


def _sample_requests(rows: pd.DataFrame, max_rows: int, seed: int) -> pd.DataFrame:
    if len(rows) <= max_rows:
        return rows
    sizes = rows.groupby(c.REQUEST_ID).size()
    order = np.random.default_rng(seed).permutation(np.sort(sizes.index.to_numpy()))
    kept = order[np.cumsum(sizes.loc[order].to_numpy()) <= max_rows]
    return rows[rows[c.REQUEST_ID].isin(kept)]


# --- what each vector means -----------------------------------------------------------------------
def registry_feature_names(client) -> FeatureNames:
    """label -> the feature order of that registered version, from its run's features.json."""
    cache: dict[str, list[str] | None] = {}

    def names(label: str) -> list[str] | None:
        if label not in cache:
            match = MODEL_LABEL.match(label)
            cache[label] = None
            if match:
                try:
                    run_id = client.get_model_version(match["name"], match["version"]).run_id
                    with tempfile.TemporaryDirectory() as tmp:
                        path = client.download_artifacts(run_id, FEATURES_ARTIFACT, tmp)
                        cache[label] = list(json.loads(Path(path).read_text())["features"])
                except Exception:  # noqa: BLE001 - unknown version / no artifact: reported as skipped
                    cache[label] = None
        return cache[label]

    return names


# --- the comparison -------------------------------------------------------------------------------
def _vectors(served: pd.DataFrame, width: int) -> np.ndarray:
    """The logged vectors as a float64 matrix of float32 values (NaN = missing)."""
    out = np.full((len(served), width), np.nan)
    for i, vec in enumerate(served[c.FEATURES]):
        values = np.asarray([np.nan if v is None else v for v in vec], dtype=np.float32)
        if len(values) != width:
            raise ValueError(f"a logged vector has {len(values)} values, its model {width} features")
        out[i] = values
    return out


def compare(served: pd.DataFrame, training: pd.DataFrame, names_of: FeatureNames, cfg: SkewConfig,
            report: SkewReport, earlier: pd.DataFrame | None = None) -> SkewReport:
    """Fill `report` with the per-feature mismatches of `served` (logged vectors) against
    `training` (retrieval's columns for the same rows, in the same order). `earlier`: other values
    a row's feature may match, the real-time ones of the stream delay before its request
    (`features.retrieval.realtime_values_since`: `row` = position in `served`, `feature`, `value`)."""
    if len(served) != len(training):
        raise ValueError(f"{len(served)} served rows but {len(training)} retrieved")
    served = served.reset_index(drop=True)
    training = training.reset_index(drop=True)
    requests: set[str] = set()
    for label, rows in served.groupby(c.MODEL_VERSION, sort=True):
        names = names_of(str(label))
        if names is None:
            key = "model version unknown to the registry"
            report.skipped[key] = report.skipped.get(key, 0) + len(rows)
            continue
        idx = rows.index.to_numpy()
        logged = _vectors(rows, len(names))
        report.rows += len(idx)
        requests.update(rows[c.REQUEST_ID])
        for j, name in enumerate(names):
            s = logged[:, j]
            if name in training.columns:
                t = pd.to_numeric(training[name].iloc[idx], errors="coerce").to_numpy(np.float64)
                t = t.astype(np.float32).astype(np.float64)  # the model sees float32
            else:  # a feature the model scored that training retrieval does not return at all
                t = np.full(len(idx), np.nan)
            s_nan, t_nan = np.isnan(s), np.isnan(t)
            diff = np.where(s_nan | t_nan, np.inf, np.abs(s - t))
            bad = ~_same(s, t, name, cfg)
            skew = report.features.setdefault(name, FeatureSkew())
            if earlier is not None and bad.any():
                delayed = _matches_earlier(idx[bad], s[bad], earlier, name, cfg)
                skew.delayed += int(delayed.sum())
                bad[np.flatnonzero(bad)[delayed]] = False
            skew.rows += len(idx)
            skew.mismatches += int(bad.sum())
            for k in np.flatnonzero(bad)[np.argsort(-diff[bad], kind="stable")][: cfg.examples]:
                row = rows.iloc[k]
                skew.worst.append({
                    c.REQUEST_ID: str(row[c.REQUEST_ID]), c.POST_ID: int(row[c.POST_ID]),
                    c.VIEWER_ID: int(row[c.VIEWER_ID]), c.MODEL_VERSION: str(label),
                    "served": None if s_nan[k] else float(s[k]),
                    "training": None if t_nan[k] else float(t[k]),
                })
            skew.worst = sorted(skew.worst, key=_gap, reverse=True)[: cfg.examples]
    report.requests += len(requests)
    return report


def _matches_earlier(rows: np.ndarray, served: np.ndarray, earlier: pd.DataFrame, name: str,
                     cfg: SkewConfig) -> np.ndarray:
    """For each of `rows` (positions) with its `served` value: does it match one of the feature's
    `earlier` values of that row?"""
    mine = earlier[(earlier["feature"] == name) & earlier["row"].isin(rows)]
    if mine.empty:
        return np.zeros(len(rows), bool)
    s = pd.Series(served, index=rows).loc[mine["row"].to_numpy()].to_numpy()
    v = mine["value"].to_numpy(np.float64).astype(np.float32).astype(np.float64)  # as the model sees it
    return np.isin(rows, mine["row"].to_numpy()[_same(s, v, name, cfg)])


def _same(served: np.ndarray, training: np.ndarray, name: str, cfg: SkewConfig) -> np.ndarray:
    """Equal within the feature's tolerance, |served - training| <= atol + rtol * |training|, or
    both missing."""
    tol = cfg.feature_atol.get(name, cfg.atol) + cfg.rtol * np.abs(np.nan_to_num(training))
    with np.errstate(invalid="ignore"):  # NaN gaps compare False: only both-missing matches them
        close = np.abs(served - training) <= tol
    return close | (np.isnan(served) & np.isnan(training))


def _gap(example: dict[str, Any]) -> float:
    if example["served"] is None or example["training"] is None:
        return float("inf")
    return abs(example["served"] - example["training"])


def check_day(lake_dir: Path, day: str, store: FeatureStore, names_of: FeatureNames,
              cfg: SkewConfig | None = None, clock_speed: float = 1.0) -> SkewReport:
    """The skew report of one day's served impressions (nothing served by a model: an empty report
    that passes, saying so). `clock_speed`: simulated seconds per real second of the clock the day
    was served on (live mode): the stream's delay stretches as much in the day's event time."""
    cfg = cfg or SkewConfig.load()
    served, skipped, n_scored = served_impressions(Path(lake_dir), day, cfg)
    delay_s = cfg.stream_delay_s * clock_speed
    report = SkewReport(day, cfg.max_mismatch_rate, delay_s, scored_rows=n_scored, skipped=skipped)
    if served.empty:
        return report
    entity = served[[c.VIEWER_ID, c.AUTHOR_ID, c.POST_ID]].assign(**{EVENT_TIMESTAMP: served[c.TS]})
    service = RANKING_SERVICES[-1]
    earlier = realtime_values_since(store, entity, service, timedelta(seconds=delay_s)) if delay_s else None
    return compare(served, historical_features(store, entity, service), names_of, cfg, report, earlier)
