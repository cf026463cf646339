"""Posts: who posts what, when, about which topic, with which hashtags; and which get deleted.

Posting is exogenous to what people see, so every post of the world (including the few days
before WORLD_START that day 0's feeds draw on) is drawn up front, vectorised per day.
Post ids follow creation time.
"""

from __future__ import annotations

import json
from dataclasses import dataclass

import numpy as np

from data.days import DAY_MS, HOUR_MS, MINUTE_MS
from data.world.config import HASHTAGS_PER_TOPIC, WorldConfig
from data.world.graph import Users, sample_topics
from data.world.util import local_to_utc_in_day, rng_for, sample_local_ms

TOPICS = (
    "food",
    "travel",
    "fitness",
    "fashion",
    "pets",
    "music",
    "art",
    "photography",
    "sports",
    "tech",
    "gaming",
    "beauty",
    "nature",
    "cars",
    "comedy",
    "family",
    "books",
    "diy",
    "dance",
    "science",
)
# Hashtags are the observable trace of a post's topic: most come from its main topic.
_TAG_PATTERNS = (
    "{t}",
    "{t}lover",
    "insta{t}",
    "{t}gram",
    "{t}oftheday",
    "{t}life",
    "{t}addict",
    "{t}daily",
    "love{t}",
    "{t}vibes",
    "{t}goals",
    "{t}community",
    "{t}time",
    "my{t}",
    "{t}world",
    "{t}squad",
)
GENERIC_TAGS = (
    "instagood",
    "photooftheday",
    "love",
    "instadaily",
    "picoftheday",
    "happy",
    "follow",
    "tbt",
)
_CAPTION_OPENERS = (
    "loving this",
    "new",
    "weekend",
    "throwback to",
    "cannot stop thinking about",
    "today's",
    "some",
    "more",
    "my favourite",
    "first try at",
)
CAPTION_NOUNS = {
    "food": "dinner",
    "travel": "trip",
    "fitness": "workout",
    "fashion": "outfit",
    "pets": "pup",
    "music": "song",
    "art": "sketch",
    "photography": "shot",
    "sports": "match",
    "tech": "setup",
    "gaming": "stream",
    "beauty": "look",
    "nature": "sunset",
    "cars": "ride",
    "comedy": "meme",
    "family": "moments",
    "books": "read",
    "diy": "project",
    "dance": "routine",
    "science": "experiment",
}
MEDIA_TYPES = ("photo", "video", "carousel")  # same order as data.columns.MEDIA_TYPES
NEVER = np.iinfo(np.int64).max  # deleted_ms of a post that is never deleted


def topic_names(n_topics: int) -> tuple[str, ...]:
    if n_topics > len(TOPICS):
        raise ValueError(f"at most {len(TOPICS)} topics")
    return TOPICS[:n_topics]


def hashtag_vocabulary(n_topics: int, per: int = HASHTAGS_PER_TOPIC) -> list[list[str]]:
    """Each topic's `per` tags, the common ones first."""
    return [[p.format(t=t) for p in _TAG_PATTERNS[:per]] for t in topic_names(n_topics)]


@dataclass
class Posts:
    """All posts of the world; arrays indexed by post id (0 is a placeholder)."""

    n: int
    author: np.ndarray
    created_ms: np.ndarray
    deleted_ms: np.ndarray  # NEVER if not deleted within the world
    media: np.ndarray  # index into MEDIA_TYPES
    main_topic: np.ndarray
    mix: np.ndarray  # (n+1, T) topic mix of the post
    quality: np.ndarray  # latent quality (hidden from the logs)
    hashtags_json: list[str]  # JSON array text per post, for the landing writer
    caption_json: list[str]  # JSON string or "null"


def make_posts(cfg: WorldConfig, users: Users, seed: int, start_ms: int) -> Posts:
    end_ms = start_ms + cfg.days * DAY_MS
    authors, created = [], []
    for d in range(-cfg.prestart_post_days, cfg.days):  # one vectorised draw per day
        rng = rng_for(seed, "posts", d + cfg.prestart_post_days)
        day0 = start_ms + d * DAY_MS
        alive = users.created_ms < day0 + DAY_MS
        alive[0] = False
        counts = rng.poisson(users.post_rate * alive)
        a = np.repeat(np.arange(users.n + 1), counts)
        ms = day0 + local_to_utc_in_day(sample_local_ms(rng, len(a)), users.utc_offset_min[a])
        # An account's posts on its sign-up day come after it was created.
        born = users.created_ms[a]
        late = ms <= born
        ms[late] = (
            born[late]
            + 1
            + (rng.random(int(late.sum())) * (day0 + DAY_MS - 1 - born[late])).astype(np.int64)
        )
        authors.append(a)
        created.append(ms)
    author = np.concatenate(authors)
    created_ms = np.concatenate(created)
    order = np.argsort(created_ms, kind="stable")
    author, created_ms = author[order], created_ms[order]
    n = len(author)

    rng = rng_for(seed, "post_attributes")
    main_topic = sample_topics(rng, users.author_topics[author])
    # A post is mostly about one topic, with a share of its author's overall mix.
    mix = 0.35 * users.author_topics[author]
    mix[np.arange(n), main_topic] += 0.65
    quality = (users.author_quality[author] + rng.normal(0.0, 0.8, n)).astype(np.float32)
    media = sample_topics(rng, users.media_pref[author])

    deleted = rng.random(n) < cfg.delete_share
    delay = (10 * MINUTE_MS + rng.exponential(18 * HOUR_MS, n)).astype(np.int64)
    deleted_ms = np.where(deleted, created_ms + delay, NEVER)
    deleted_ms[deleted_ms >= end_ms] = NEVER  # not deleted yet when the world ends

    hashtags_json, caption_json = _hashtags_and_captions(rng, cfg, users, author, main_topic)

    def pad(x: np.ndarray, fill=0) -> np.ndarray:
        return np.concatenate([np.full((1, *x.shape[1:]), fill, dtype=x.dtype), x])

    return Posts(
        n=n,
        author=pad(author),
        created_ms=pad(created_ms),
        deleted_ms=pad(deleted_ms, NEVER),
        media=pad(media),
        main_topic=pad(main_topic),
        mix=pad(mix.astype(np.float32)),
        quality=pad(quality),
        hashtags_json=["[]", *hashtags_json],
        caption_json=["null", *caption_json],
    )


def _draw_tags(rng, flat: np.ndarray, per: int, topic: np.ndarray, topical: np.ndarray) -> np.ndarray:
    """One tag per entry: of its topic where `topical` (the first patterns the common ones,
    Zipf-like), else a generic one. `flat`: every topic's `per` tags, then the generic ones."""
    slot = np.minimum((rng.pareto(1.2, len(topic))).astype(np.int64), per - 1)
    generic = len(flat) - len(GENERIC_TAGS) + rng.integers(0, len(GENERIC_TAGS), len(topic))
    return flat[np.where(topical, topic * per + slot, generic)]


def live_hashtags(rng, main_topic: np.ndarray, n_topics: int, per: int = HASHTAGS_PER_TOPIC) -> list[list[str]]:
    """Hashtags for posts published in live mode, whose truth keeps topics but no tags: drawn like
    the world's, from the main topic (85%) or generic ones, without the author's other topics."""
    if len(main_topic) == 0:
        return []  # np.split would give one empty list
    flat = np.array([tag for tags in hashtag_vocabulary(n_topics, per) for tag in tags] + list(GENERIC_TAGS))
    k = np.minimum(rng.poisson(2.2, len(main_topic)) + 1, 10)
    owner = np.repeat(np.arange(len(main_topic)), k)
    tags = _draw_tags(rng, flat, per, np.asarray(main_topic)[owner], rng.random(len(owner)) < 0.85)
    return [list(dict.fromkeys(x.tolist())) for x in np.split(tags, np.cumsum(k)[:-1])]


def _hashtags_and_captions(rng, cfg, users, author, main_topic) -> tuple[list[str], list[str]]:
    """Hashtags: 70% from the main topic, 15% from another topic of the author, 15% generic."""
    n, per = len(author), cfg.hashtags_per_topic
    vocab = hashtag_vocabulary(cfg.n_topics, per)
    flat = np.array([tag for tags in vocab for tag in tags] + list(GENERIC_TAGS))
    k = np.minimum(rng.poisson(2.2, n) + (rng.random(n) < 0.2), 10)
    owner = np.repeat(np.arange(n), k)
    kind = rng.random(len(owner))
    other = sample_topics(rng, users.author_topics[author[owner]])
    topic = np.where(kind < 0.7, main_topic[owner], other)
    tags = _draw_tags(rng, flat, per, topic, kind < 0.85)
    splits = np.cumsum(k)[:-1]
    hashtags_json = [
        json.dumps(list(dict.fromkeys(x.tolist())), separators=(",", ":"))
        for x in np.split(tags, splits)
    ]

    names = topic_names(cfg.n_topics)
    nouns = np.array([CAPTION_NOUNS[t] for t in names])
    openers = np.array(_CAPTION_OPENERS)
    first_tag = np.array([x[0] if len(x) else "" for x in np.split(tags, splits)])
    has_caption = rng.random(n) < 0.75
    opener = openers[rng.integers(0, len(openers), n)]
    captions = np.char.add(np.char.add(opener, " "), nouns[main_topic])
    with_tag = rng.random(n) < 0.5
    captions = np.where(
        with_tag & (first_tag != ""), np.char.add(np.char.add(captions, " #"), first_tag), captions
    )
    pairs = zip(captions.tolist(), has_caption.tolist(), strict=True)
    caption_json = [json.dumps(c) if h else "null" for c, h in pairs]
    return hashtags_json, caption_json
