"""Point-in-time training features: an entity dataframe of requests -> feed_ranker_v1 as of each
request's time, through Feast's get_historical_features (no value from after a request leaks in).
"""

from __future__ import annotations

import pandas as pd
from feast import FeatureStore

from data import columns as c
from features.feature_repo.definitions import REQUEST_TS, SERVICE_NAME
from features.tables import EVENT_TIMESTAMP

REQUIRED = (c.VIEWER_ID, c.AUTHOR_ID, c.POST_ID, EVENT_TIMESTAMP)
_EPOCH = pd.Timestamp(0, tz="UTC")
_SECOND = pd.Timedelta(seconds=1)


def epoch_seconds(ts: pd.Series) -> pd.Series:
    """Whole epoch seconds (floor) of a timestamp column, whatever its unit: the lake's Parquet
    holds microseconds (Spark), the contracts milliseconds, pandas defaults to nanoseconds, so the
    raw int64 of a datetime column means a different thing in each. Naive times are UTC."""
    ts = pd.to_datetime(ts, utc=True)
    return ((ts - _EPOCH) // _SECOND).astype("int64")


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
    result = store.get_historical_features(
        entity_df=frame, features=store.get_feature_service(service), full_feature_names=True
    ).to_df()
    # Feast does not keep the entity order; training sets are grouped by request, so restore it.
    return result.sort_values("_row").drop(columns="_row").reset_index(drop=True)
