"""Log contracts: pyarrow schemas are the single source of truth for every landing log.

A contract says what a landing row must look like (schema, required columns, enum values), what
makes two rows the same event (key), which column dates it, and which ids must already be known
(referential integrity). Ingestion validates against exactly this; docs/log_contracts.md explains it
for people who export their own production logs into this shape.

Enums are of two kinds: the platform's own (follow actions, surfaces, media types: the code acts on
each value) live here; engagement types and impression sources are a team's vocabulary
(`data.vocabulary`), so a contract names which vocabulary list a column takes its values from and
ingestion resolves it against the vocabulary it is given (`LogContract.enum_values`). Id columns
(`ID_ENTITIES`) are int64 in the lake and accept a JSON integer or string (`data.ids`).
"""

from __future__ import annotations

from dataclasses import dataclass, field

import pyarrow as pa

from data import columns as c
from data.vocabulary import Vocabulary

TIMESTAMP = pa.timestamp("ms", tz="UTC")


@dataclass(frozen=True)
class LogContract:
    name: str
    schema: pa.Schema
    required: tuple[str, ...]
    key: tuple[str, ...]  # rows with equal key are one event: later copies are duplicates
    time_column: str  # the column timestamp sanity is checked on
    enums: dict[str, tuple[str, ...]] = field(default_factory=dict)
    # column -> the `Vocabulary` attribute listing its values ("engagement_names", "impression_sources")
    vocabulary_enums: dict[str, str] = field(default_factory=dict)
    # column -> the log whose ids it must reference ("users" or "posts")
    references: dict[str, str] = field(default_factory=dict)
    # Event logs only: a row dated more than this many days before its landing day is rejected.
    # Snapshot-like logs (users, graph, posts) may carry history of any age in a backfill.
    max_age_days: int | None = None

    @property
    def column_names(self) -> list[str]:
        return self.schema.names

    @property
    def id_columns(self) -> tuple[str, ...]:
        """The id columns (int64, mapped from strings by `data.ids`), in schema order."""
        return tuple(name for name in self.schema.names if name in ID_ENTITIES)

    def enum_values(self, vocabulary: Vocabulary) -> dict[str, tuple[str, ...]]:
        """Every enum column's allowed values (the fixed ones and the vocabulary's), in schema order."""
        values = dict(self.enums)
        for column, attribute in self.vocabulary_enums.items():
            values[column] = tuple(getattr(vocabulary, attribute))
        return {name: values[name] for name in self.schema.names if name in values}


# Every id column and the entity (the log whose ids it names) it belongs to: a string id maps to the
# same int64 in every column of one entity, and collisions are looked for within an entity.
ID_ENTITIES = {
    c.USER_ID: "users",
    c.AUTHOR_ID: "users",
    c.VIEWER_ID: "users",
    c.FOLLOWER_ID: "users",
    c.FOLLOWEE_ID: "users",
    c.BLOCKER_ID: "users",
    c.BLOCKED_ID: "users",
    c.POST_ID: "posts",
    c.STORY_ID: "stories",
}


USERS = LogContract(
    name="users",
    schema=pa.schema(
        [
            pa.field(c.USER_ID, pa.int64(), nullable=False),
            pa.field(c.CREATED_AT, TIMESTAMP, nullable=False),
            pa.field(c.UPDATED_AT, TIMESTAMP, nullable=False),
            pa.field(c.IS_PRIVATE, pa.bool_(), nullable=False),
            pa.field(c.IS_VERIFIED, pa.bool_(), nullable=False),
            pa.field(c.COUNTRY, pa.string()),
        ]
    ),
    required=(c.USER_ID, c.CREATED_AT, c.UPDATED_AT, c.IS_PRIVATE, c.IS_VERIFIED),
    key=(c.USER_ID, c.UPDATED_AT),
    time_column=c.UPDATED_AT,
)

FOLLOWS = LogContract(
    name="follows",
    schema=pa.schema(
        [
            pa.field(c.FOLLOWER_ID, pa.int64(), nullable=False),
            pa.field(c.FOLLOWEE_ID, pa.int64(), nullable=False),
            pa.field(c.ACTION, pa.string(), nullable=False),
            pa.field(c.TS, TIMESTAMP, nullable=False),
        ]
    ),
    required=(c.FOLLOWER_ID, c.FOLLOWEE_ID, c.ACTION, c.TS),
    key=(c.FOLLOWER_ID, c.FOLLOWEE_ID, c.ACTION, c.TS),
    time_column=c.TS,
    enums={c.ACTION: c.FOLLOW_ACTIONS},
    references={c.FOLLOWER_ID: "users", c.FOLLOWEE_ID: "users"},
)

BLOCKS = LogContract(
    name="blocks",
    schema=pa.schema(
        [
            pa.field(c.BLOCKER_ID, pa.int64(), nullable=False),
            pa.field(c.BLOCKED_ID, pa.int64(), nullable=False),
            pa.field(c.ACTION, pa.string(), nullable=False),
            pa.field(c.TS, TIMESTAMP, nullable=False),
        ]
    ),
    required=(c.BLOCKER_ID, c.BLOCKED_ID, c.ACTION, c.TS),
    key=(c.BLOCKER_ID, c.BLOCKED_ID, c.ACTION, c.TS),
    time_column=c.TS,
    enums={c.ACTION: c.BLOCK_ACTIONS},
    references={c.BLOCKER_ID: "users", c.BLOCKED_ID: "users"},
)

POSTS = LogContract(
    name="posts",
    schema=pa.schema(
        [
            pa.field(c.POST_ID, pa.int64(), nullable=False),
            pa.field(c.AUTHOR_ID, pa.int64(), nullable=False),
            pa.field(c.CREATED_AT, TIMESTAMP, nullable=False),
            pa.field(c.MEDIA_TYPE, pa.string(), nullable=False),
            pa.field(c.HASHTAGS, pa.list_(pa.string())),
            pa.field(c.CAPTION, pa.string()),
            # null on the creation row; a later row with the same post_id and deleted_at set is
            # the deletion
            pa.field(c.DELETED_AT, TIMESTAMP),
        ]
    ),
    required=(c.POST_ID, c.AUTHOR_ID, c.CREATED_AT, c.MEDIA_TYPE),
    key=(c.POST_ID, c.DELETED_AT),
    time_column=c.CREATED_AT,
    enums={c.MEDIA_TYPE: c.MEDIA_TYPES},
    references={c.AUTHOR_ID: "users"},
)

ENGAGEMENTS = LogContract(
    name="engagements",
    schema=pa.schema(
        [
            pa.field(c.EVENT_ID, pa.string(), nullable=False),
            pa.field(c.VIEWER_ID, pa.int64(), nullable=False),
            pa.field(c.POST_ID, pa.int64(), nullable=False),
            pa.field(c.AUTHOR_ID, pa.int64(), nullable=False),
            pa.field(c.TYPE, pa.string(), nullable=False),
            pa.field(c.VALUE, pa.float64()),  # dwell: milliseconds on the post; else null
            pa.field(c.TS, TIMESTAMP, nullable=False),
            pa.field(c.SURFACE, pa.string(), nullable=False),
            pa.field(c.REQUEST_ID, pa.string()),  # the feed request whose impression it follows
        ]
    ),
    required=(c.EVENT_ID, c.VIEWER_ID, c.POST_ID, c.AUTHOR_ID, c.TYPE, c.TS, c.SURFACE),
    key=(c.EVENT_ID,),
    time_column=c.TS,
    enums={c.SURFACE: c.SURFACES},
    vocabulary_enums={c.TYPE: "engagement_names"},
    references={c.VIEWER_ID: "users", c.POST_ID: "posts"},
    max_age_days=7,
)

IMPRESSIONS = LogContract(
    name="impressions",
    schema=pa.schema(
        [
            pa.field(c.REQUEST_ID, pa.string(), nullable=False),
            pa.field(c.VIEWER_ID, pa.int64(), nullable=False),
            pa.field(c.POST_ID, pa.int64(), nullable=False),
            pa.field(c.POSITION, pa.int32(), nullable=False),
            pa.field(c.SURFACE, pa.string(), nullable=False),
            pa.field(c.SOURCE, pa.string(), nullable=False),
            pa.field(c.TS, TIMESTAMP, nullable=False),
            pa.field(c.MODEL_VERSION, pa.string()),  # null/"logging_policy" before any model
            pa.field(c.SCORE, pa.float64()),  # the served score, when a model ranked it
            pa.field(c.FEATURES, pa.list_(pa.float32())),  # feature vector the model scored
            # P(this post at this position | request) under the logging policy, when it was random
            # (the service's exploration share, a bandit's log): what off-policy evaluation weighs by
            pa.field(c.PROPENSITY, pa.float64()),
            # the live A/B the serving request was routed by, and the viewer's arm in it (control |
            # treatment), so training and analysis can tell the arms' impressions apart
            pa.field(c.EXPERIMENT, pa.string()),
            pa.field(c.ARM, pa.string()),
        ]
    ),
    required=(c.REQUEST_ID, c.VIEWER_ID, c.POST_ID, c.POSITION, c.SURFACE, c.SOURCE, c.TS),
    key=(c.REQUEST_ID, c.POST_ID),
    time_column=c.TS,
    enums={c.SURFACE: c.SURFACES},
    vocabulary_enums={c.SOURCE: "impression_sources"},
    references={c.VIEWER_ID: "users", c.POST_ID: "posts"},
    max_age_days=7,
)

STORIES = LogContract(
    name="stories",
    schema=pa.schema(
        [
            pa.field(c.STORY_ID, pa.int64(), nullable=False),
            pa.field(c.AUTHOR_ID, pa.int64(), nullable=False),
            pa.field(c.CREATED_AT, TIMESTAMP, nullable=False),  # live until created_at + 24 h, exactly
            pa.field(c.MEDIA_TYPE, pa.string(), nullable=False),
            # null on the creation row; a later row with the same story_id and deleted_at set is
            # the deletion (as the posts log's)
            pa.field(c.DELETED_AT, TIMESTAMP),
        ]
    ),
    required=(c.STORY_ID, c.AUTHOR_ID, c.CREATED_AT, c.MEDIA_TYPE),
    key=(c.STORY_ID, c.DELETED_AT),
    time_column=c.CREATED_AT,
    enums={c.MEDIA_TYPE: c.STORY_MEDIA_TYPES},
    references={c.AUTHOR_ID: "users"},
)

POST_LABELS = LogContract(
    name="post_labels",
    schema=pa.schema(
        [
            pa.field(c.POST_ID, pa.int64(), nullable=False),
            pa.field(c.LABEL, pa.string(), nullable=False),
            # the moderation classifier's confidence in [0, 1]; null: a human reviewer's decision
            pa.field(c.SCORE, pa.float64()),
            pa.field(c.TS, TIMESTAMP, nullable=False),  # when the post was labelled
        ]
    ),
    required=(c.POST_ID, c.LABEL, c.TS),
    key=(c.POST_ID, c.LABEL, c.TS),
    time_column=c.TS,
    enums={c.LABEL: c.CONTENT_LABELS},
    references={c.POST_ID: "posts"},
    max_age_days=7,
)

# Ids a reference may point at: the log and its id column.
REFERENCED_IDS = {"users": c.USER_ID, "posts": c.POST_ID}

# In dependency order: a log's references are ingested before it.
CONTRACTS: dict[str, LogContract] = {
    k.name: k for k in (USERS, POSTS, FOLLOWS, BLOCKS, ENGAGEMENTS, IMPRESSIONS, STORIES, POST_LABELS)
}  # new logs last: the simulator's landing draws are keyed by a log's place here
LOG_TYPES = tuple(CONTRACTS)
