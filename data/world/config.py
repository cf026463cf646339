"""World sizes and the rates that shape them.

One frozen dataclass per size, so a size is a single reviewable object and tests can build
variants with `dataclasses.replace`. Rates are per user per day unless a name says otherwise.
"""

from __future__ import annotations

from dataclasses import dataclass, field

# Dirt kinds, in the order the ingestion validator judges a line.
MALFORMED_KINDS = (
    "malformed_json",
    "missing_required",
    "bad_type",
    "bad_enum",
    "ts_in_future",
    "unknown_reference",
)
DIRT_KINDS = ("duplicate", "late", *MALFORMED_KINDS)
HASHTAGS_PER_TOPIC = 12  # every size's; live mode tags its posts from the same vocabulary


@dataclass(frozen=True)
class DirtRates:
    """Share of a file's clean lines that get each kind of dirt."""

    duplicate_same_file: float = 0.001  # exact copy of a line in the same file
    duplicate_next_day: float = 0.0005  # exact copy re-sent in the next landing day's file
    late: float = 0.01  # engagement/impression events that land one day late
    malformed: float = 0.0002  # per malformed kind (so ~0.1% of lines are malformed in total)


@dataclass(frozen=True)
class WorldConfig:
    name: str
    n_users: int  # accounts that exist before WORLD_START
    days: int
    signups_per_day: float  # mean new accounts a simulated day (cold-start users)
    n_topics: int = 20
    hashtags_per_topic: int = HASHTAGS_PER_TOPIC
    # --- graph ---------------------------------------------------------------------------------
    mean_out_degree: float = (
        20.0  # accounts a user wants to follow (lognormal), before follow-backs
    )
    n_celebrities: int = 0  # 0: max(8, 0.2% of users)
    top_celebrity_share: float = 0.07  # share of all users following the most followed account
    celebrity_zipf: float = 0.6  # share of celebrity rank r = top * r**-zipf
    reciprocity: float = 0.3  # chance a non-celebrity follows back
    private_share: float = 0.15
    initial_blocks_per_user: float = 0.004
    initial_mutes_per_user: float = 0.006
    # --- content -------------------------------------------------------------------------------
    mean_post_rate: float = 0.22  # posts per user per day (lognormal, heavy-tailed)
    prestart_post_days: int = 3  # days of posts before WORLD_START, so day 0 has a feed
    delete_share: float = 0.02
    # Stories (the stories log): live 24 h after they are posted (data.columns.STORY_TTL_MS)
    stories_per_user_day: float = 0.3  # Poisson mean per existing account and day
    story_delete_share: float = 0.03  # deleted by their author before they expire
    # Moderation labels (the post_labels log): a classifier labels each new post, with noise both ways
    borderline_quality_share: float = 0.03  # truly borderline: the world's lowest-quality posts
    label_true_positive_rate: float = 0.7  # chance the classifier flags a truly borderline post
    label_false_positive_rate: float = 0.005  # ... and one that is not
    # --- activity ------------------------------------------------------------------------------
    mean_daily_active: float = 0.45  # mean chance a user opens the app on a given day
    explore_share: float = 0.2  # sessions that open Explore rather than Home
    home_window_days: float = 3.0
    explore_window_days: float = 2.0
    # --- graph dynamics, per day -----------------------------------------------------------------
    new_follow_rate: float = 0.05  # chance an active user adds follows that day
    unfollow_rate: float = 0.001  # per existing follow edge
    block_rate: float = 0.0001  # background blocks per user
    # --- engineering -----------------------------------------------------------------------------
    viewer_chunk: int = 25_000  # viewers simulated at once: bounds memory on big worlds
    dirt: DirtRates = field(default_factory=DirtRates)

    @property
    def celebrity_count(self) -> int:
        return self.n_celebrities or max(8, int(0.002 * self.n_users))


WORLD_CONFIGS: dict[str, WorldConfig] = {
    # Fewer follows per user on small worlds keep the follower distribution skewed there too.
    "tiny": WorldConfig(name="tiny", n_users=2_000, days=4, signups_per_day=30, mean_out_degree=10),
    "small": WorldConfig(
        name="small", n_users=20_000, days=7, signups_per_day=250, mean_out_degree=16
    ),
    "medium": WorldConfig(
        name="medium", n_users=100_000, days=14, signups_per_day=1_000, mean_out_degree=20
    ),
}
