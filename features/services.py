"""The ranking feature services' names, without Feast: configs (training, serving) name one, and
features/feature_repo/definitions.py defines them. Each later service holds every feature of the
ones before, so a reader of the newest serves a model trained on any of them."""

from typing import Literal, get_args

RankingService = Literal["feed_ranker_v1", "feed_ranker_v2"]
RANKING_SERVICES: tuple[str, ...] = get_args(RankingService)  # oldest first
SERVICE_V1, SERVICE_V2 = RANKING_SERVICES
