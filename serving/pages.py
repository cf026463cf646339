"""What RankingApp answers: typed dicts, serialised as they are by the HTTP service (orjson), in
the schema serving.service's response models publish (a test holds the two together)."""

from __future__ import annotations

from typing import TypedDict


class Item(TypedDict):
    post_id: int
    author_id: int
    score: float
    source: str
    position: int
    interstitial: str | None  # the content label(s) to cover the post with; None: none


class Answer(TypedDict):
    """What every ranking answer says about how it was made."""

    request_id: str
    surface: str
    viewer_id: int
    experiment: str | None
    arm: str
    model_version: str
    scorer: str
    heuristic_reason: str | None
    degraded: list[str]
    degraded_reasons: dict[str, str]
    candidates: dict[str, int]
    stage_ms: dict[str, float]


class FeedPage(Answer):
    items: list[Item]
    filtered: dict[str, int]
    next_cursor: str | None


class RankedPosts(Answer):
    items: list[Item]
    not_rankable: int
