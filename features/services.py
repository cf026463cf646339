"""The ranking feature services' names, without Feast: configs (training, serving) name one, and
features/feature_repo/definitions.py defines them. Each later service holds every feature of the
ones before, so a reader of the newest serves a model trained on any of them."""

from typing import Literal, get_args

from features.streaming import spec

RankingService = Literal["feed_ranker_v1", "feed_ranker_v2"]
RANKING_SERVICES: tuple[str, ...] = get_args(RankingService)  # oldest first
SERVICE_V1, SERVICE_V2 = RANKING_SERVICES

REALTIME_VIEWS = (spec.POST_VIEW, spec.AUTHOR_VIEW, spec.PAIR_VIEW)  # what feed_ranker_v2 adds to v1


def is_realtime(column: str) -> bool:
    """Whether a feature column (`<view>__<feature>`) is one of a real-time view's."""
    return column.split("__", 1)[0] in REALTIME_VIEWS


def service_columns(columns: list[str], service: RankingService) -> list[str]:
    """Of a training set's feature columns (`<view>__<feature>`), those `service` serves: v1 leaves
    the real-time views' out. A set built from v2 holds v1's columns too, so either can train on it."""
    if service == SERVICE_V1:
        return [col for col in columns if not is_realtime(col)]
    return list(columns)
