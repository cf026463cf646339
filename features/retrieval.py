"""Point-in-time training features: an entity dataframe of requests -> a feature service's features
as of each request's time (no value from after a request leaks in).

The daily views (and the on-demand view) go through Feast's get_historical_features. The real-time
views are joined here with the same rule, an as-of join (pandas `merge_asof`): for each row, the
entity's latest offline row at or before its time and within the view's ttl, which is Feast's
point-in-time rule (tested equal to it). Their offline rows are one per entity and engagement
(hundreds of thousands a day): Feast's file offline store joins them by key before filtering on
time, and on the medium world that took over 18 GB and was killed.
"""

from __future__ import annotations

import math
from datetime import timedelta

import numpy as np
import pandas as pd
from feast import FeatureStore

from data import columns as c
from data import lake
from data.days import day_of_ms, days_before, days_from
from features.feature_repo.definitions import REQUEST_TS, SERVICE_NAME
from features.services import REALTIME_VIEWS
from features.streaming.backfill import realtime_dir, registry_lake
from features.tables import EVENT_TIMESTAMP

REQUIRED = (c.VIEWER_ID, c.AUTHOR_ID, c.POST_ID, EVENT_TIMESTAMP)
_SECOND = pd.Timedelta(seconds=1)


def epoch_seconds(ts: pd.Series) -> pd.Series:
    """Whole epoch seconds of a time column: the request time the on-demand view reads."""
    return lake.epoch_floor(ts, _SECOND)


def historical_features(store: FeatureStore, entity_df: pd.DataFrame, service: str = SERVICE_NAME) -> pd.DataFrame:
    """One row per entity row, in its order: its columns plus every service feature as
    `<view>__<feature>`. `event_timestamp` is the request time; `request_ts_s` defaults to it."""
    missing = [col for col in REQUIRED if col not in entity_df.columns]
    if missing:
        raise ValueError(f"entity dataframe lacks required columns {missing}")
    frame = entity_df.copy()
    frame[EVENT_TIMESTAMP] = pd.to_datetime(frame[EVENT_TIMESTAMP], utc=True)
    if REQUEST_TS not in frame.columns:
        frame[REQUEST_TS] = epoch_seconds(frame[EVENT_TIMESTAMP])
    frame["_row"] = range(len(frame))
    feature_service = store.get_feature_service(service)
    realtime = [p for p in feature_service.feature_view_projections if p.name in REALTIME_VIEWS]
    # Feast takes the service itself, or, beside real-time views, the references of its other features
    daily = [f"{p.name}:{f.name}" for p in feature_service.feature_view_projections
             if p.name not in REALTIME_VIEWS for f in p.features] if realtime else feature_service
    result = store.get_historical_features(entity_df=frame, features=daily, full_feature_names=True).to_df() \
        if daily else frame
    # Feast does not keep the entity order; training sets are grouped by request, so restore it.
    result = result.sort_values("_row").reset_index(drop=True)
    for projection in realtime:
        result = _as_of(store, result, projection)
    return result.drop(columns="_row")


def _as_of(store: FeatureStore, frame: pd.DataFrame, projection) -> pd.DataFrame:
    """`frame` (in `_row` order) with one real-time view's features as of each row's time."""
    at = _times(frame)
    return _join_as_of(frame, at, *_offline_rows(store, projection, at.min(), at.max()))


def _join_as_of(frame: pd.DataFrame, at: pd.Series, view, keys: list[str], full: list[str],
                rows: pd.DataFrame) -> pd.DataFrame:
    left = frame.drop(columns=[col for col in full if col in frame.columns]).assign(_at=at)
    left = left.astype({k: "int64" for k in keys}).sort_values("_at", kind="stable")
    joined = pd.merge_asof(left, rows.sort_values("_as_of"), left_on="_at",
                           right_on="_as_of", by=keys, direction="backward", tolerance=pd.Timedelta(view.ttl),
                           allow_exact_matches=True)
    return joined.sort_values("_row").drop(columns=["_at", "_as_of"]).reset_index(drop=True)


def realtime_values_since(store: FeatureStore, entity_df: pd.DataFrame, service: str,
                          lookback: timedelta) -> pd.DataFrame:
    """Every value each real-time feature of `service` took for each entity row in the `lookback`
    before its time: the value as of (time - lookback), and each offline row after it up to the
    time. Long: `row` (the entity row's position), `feature` (`<view>__<feature>`), `value` (NaN:
    none yet). What a service whose stream ran up to `lookback` behind may have served."""
    frame = entity_df[list(REQUIRED)].reset_index(drop=True)
    frame = frame.assign(_row=range(len(frame)))
    at = _times(frame)
    parts = []
    for projection in store.get_feature_service(service).feature_view_projections:
        if projection.name not in REALTIME_VIEWS:
            continue
        view, keys, full, rows = _offline_rows(store, projection, at.min() - lookback, at.max())
        start = _join_as_of(frame, at - lookback, view, keys, full, rows)
        for values in (start, _rows_between(frame, at - lookback, at, keys, rows)):
            parts.append(values.melt(id_vars="_row", value_vars=full, var_name="feature", value_name="value"))
    if not parts:
        return pd.DataFrame({"row": pd.Series(dtype="int64"), "feature": pd.Series(dtype=str),
                             "value": pd.Series(dtype="float64")})
    out = pd.concat(parts, ignore_index=True).rename(columns={"_row": "row"})
    return out.astype({"row": "int64", "value": "float64"})


def _rows_between(frame: pd.DataFrame, after: pd.Series, until: pd.Series, keys: list[str],
                  rows: pd.DataFrame) -> pd.DataFrame:
    """For each row of `frame` (`_row`), its entity's offline rows timed in (after, until]. Each
    entity's rows are numbered in time order; an as-of join at each end gives the numbers the span
    holds, so only the rows in it are ever built (a join on the key alone would pair every request
    with every row of its entity: millions for a busy post)."""
    ordered = rows.sort_values("_as_of", kind="stable").reset_index(drop=True)
    ordered["_n"] = ordered.groupby(keys).cumcount()
    index = ordered[[*keys, "_as_of", "_n"]]
    left = frame[["_row", *keys]].astype({k: "int64" for k in keys})

    def last_number(at: pd.Series) -> pd.Series:  # the entity's last row at or before `at`, -1: none
        joined = pd.merge_asof(left.assign(_at=at).sort_values("_at", kind="stable"), index,
                               left_on="_at", right_on="_as_of", by=keys, direction="backward")
        return joined.set_index("_row")["_n"].reindex(left["_row"]).fillna(-1).astype("int64")

    first, last = last_number(after).to_numpy() + 1, last_number(until).to_numpy()
    count = np.maximum(last - first + 1, 0)
    spans = left.loc[left.index.repeat(count)].reset_index(drop=True)
    spans["_n"] = np.repeat(first, count) + spans.groupby("_row").cumcount().to_numpy()
    return spans.merge(ordered.drop(columns="_as_of"), on=[*keys, "_n"]).drop(columns="_n")


def _times(frame: pd.DataFrame) -> pd.Series:
    return pd.to_datetime(frame[EVENT_TIMESTAMP], utc=True).astype("datetime64[ns, UTC]")


def _offline_rows(store: FeatureStore, projection, first: pd.Timestamp, last: pd.Timestamp):
    """A real-time view's offline rows that rows timed in [first, last] may join (the day files its
    ttl reaches): (view, join keys, full feature names, rows with keys, `_as_of` and the features
    under their full names)."""
    view = store.get_feature_view(projection.name)
    keys = list(view.join_keys)
    names = [f.name for f in projection.features]
    full = [f"{projection.name}__{name}" for name in names]
    days = days_from(days_before(day_of_ms(int(first.timestamp() * 1000)), math.ceil(view.ttl / timedelta(days=1))),
                     day_of_ms(int(last.timestamp() * 1000)))
    folder = realtime_dir(registry_lake(store), projection.name)
    files = [folder / f"{d}.parquet" for d in days if (folder / f"{d}.parquet").exists()]
    rows = pd.concat([pd.read_parquet(f, columns=[*keys, EVENT_TIMESTAMP, *names]) for f in files]) if files \
        else pd.DataFrame(columns=[*keys, EVENT_TIMESTAMP, *names])
    rows = rows.rename(columns=dict(zip(names, full))).astype({k: "int64" for k in keys})
    rows["_as_of"] = pd.to_datetime(rows[EVENT_TIMESTAMP], utc=True).astype("datetime64[ns, UTC]")
    return view, keys, full, rows.drop(columns=EVENT_TIMESTAMP)
