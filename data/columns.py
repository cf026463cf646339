"""Column names, enums and seeds: the one place both pandas and Spark code take them from.

Every log contract in `data.contracts` and every feature job refers to these names, so a rename is
one edit here rather than a hunt through string literals.
"""

from datetime import date

# --- identifiers -------------------------------------------------------------------------------
USER_ID = "user_id"
POST_ID = "post_id"
STORY_ID = "story_id"
AUTHOR_ID = "author_id"
VIEWER_ID = "viewer_id"
FOLLOWER_ID = "follower_id"
FOLLOWEE_ID = "followee_id"
BLOCKER_ID = "blocker_id"
BLOCKED_ID = "blocked_id"
EVENT_ID = "event_id"
REQUEST_ID = "request_id"

# --- time --------------------------------------------------------------------------------------
TS = "ts"
CREATED_AT = "created_at"
UPDATED_AT = "updated_at"
DELETED_AT = "deleted_at"

# --- attributes --------------------------------------------------------------------------------
IS_PRIVATE = "is_private"
IS_VERIFIED = "is_verified"
COUNTRY = "country"
ACTION = "action"
MEDIA_TYPE = "media_type"
HASHTAGS = "hashtags"
CAPTION = "caption"
TYPE = "type"
VALUE = "value"
SURFACE = "surface"
POSITION = "position"
SOURCE = "source"
MODEL_VERSION = "model_version"
SCORE = "score"
LABEL = "label"
FEATURES = "features"
PROPENSITY = "propensity"
EXPERIMENT = "experiment"
ARM = "arm"

# --- lake bookkeeping --------------------------------------------------------------------------
DT = "dt"  # lake partition column: the landing day (YYYY-MM-DD) a row arrived on
SOURCE_FILE = "source_file"  # landing file a row (or a quarantined line) came from
RAW_LINE = "raw_line"  # the untouched landing line, kept for quarantined rows
REASON = "reason"  # why a row was quarantined
LOG_TYPE = "log_type"
# lake/id_map (data/id_map.py): an exported id's text and the int64 id it was mapped to
ENTITY = "entity"  # "users" or "posts": the id space an id column belongs to
ID_COLUMN = "column"
ORIGINAL_ID = "original"
ID = "id"

# --- enums -------------------------------------------------------------------------------------
FOLLOW_ACTIONS = ("follow", "unfollow", "approve")
BLOCK_ACTIONS = ("block", "unblock", "mute", "unmute")
MEDIA_TYPES = ("photo", "video", "carousel")
STORY_MEDIA_TYPES = ("photo", "video")
# A story is live for exactly this long after its created_at (to the millisecond), then gone.
STORY_TTL_MS = 24 * 3600 * 1000
# Engagement types (with their role in labels) and impression sources are not fixed here: the log
# vocabulary declares them (data/vocabulary.toml, data.vocabulary), so a team's export fits by config.
# A dwell at least this long is the "long dwell" action (simulator, labels, features).
LONG_DWELL_MS = 10_000
SURFACES = ("home", "explore")
# Moderation labels on a post (the post_labels log; the integrity stage's post labels).
CONTENT_LABELS = ("spam", "borderline", "sensitive")

# --- the simulated world -----------------------------------------------------------------------
WORLD_SEED = 20261001
WORLD_START = date(2026, 10, 1)  # first simulated day, and the first Dagster daily partition
WORLD_SIZES = ("tiny", "small", "medium")
