"""The Open Bandit Dataset sample (ZOZOTOWN fashion e-commerce, late November 2019) -> landing.

The `obp` source distribution on PyPI (`obp-0.5.7.tar.gz`, fetched by `make run-open-bandit`) ships
10,000 logged rounds per (logging policy, campaign): policies `random` (uniform over the campaign's
items) and `bts` (Bernoulli Thompson Sampling), campaigns `all` (80 items), `men` (34), `women`
(46). A round is one item shown at one of three positions of a recommendation widget, with its
timestamp, whether it was clicked, the logging policy's propensity of that item at that position,
and four hashed user features. The file is read straight from the tarball (nothing extracted).

How it maps onto Loupe's landing contract (docs/real_data.md says why):
- users: one viewer account per distinct combination of the four user features (the sample has
  no user id; ~240 segments per campaign, shared across campaigns), ids 1.. in sorted order of the
  combination; one shop account per item (its author), id = the post id.
- posts: one per (campaign, item), id = CAMPAIGN_BASE[campaign] + item_id (items of different
  campaigns are not known to be the same), media_type `photo`, hashtags = the item's three hashed
  categorical features (`f1-…`, `f2-…`, `f3-…`, the random policy's hashing) and `campaign-<name>`.
  Users and posts land on the first day, created at its midnight (the sample does not say when).
- impressions: one per round, its own request (the sample does not keep which rounds were shown
  together), position = the dataset's position - 1, surface `explore`, source `exploration` for
  the uniform policy and `other` for BTS, model_version `obd-<policy>-<campaign>`, propensity = the
  dataset's `propensity_score`, ts = the round's timestamp (ms).
- engagements: one `click` per clicked round, 1 ms after its impression (the sample records no click
  time), with the impression's request_id.
Every log lands in `<landing>/<log>/<UTC day>/open_bandit-<policy>-<campaign>.jsonl` (users and posts:
`open_bandit.jsonl`); a rerun rewrites exactly these files and touches nothing else.
"""

from __future__ import annotations

import io
import json
import tarfile
from collections import Counter, defaultdict
from dataclasses import asdict, dataclass, field
from pathlib import Path

import numpy as np
import pandas as pd

from data import columns as c

VERSION = "0.5.7"
SDIST_NAME = f"obp-{VERSION}.tar.gz"
POLICIES = ("random", "bts")
CAMPAIGNS = ("all", "men", "women")
CAMPAIGN_BASE = {"all": 1_000_000, "men": 2_000_000, "women": 3_000_000}
USER_FEATURES = tuple(f"user_feature_{i}" for i in range(4))
ITEM_TAGS = ("item_feature_1", "item_feature_2", "item_feature_3")
SOURCE = {"random": "exploration", "bts": "other"}
SURFACE = "explore"
FILE_PREFIX = "open_bandit"
_ROOT = f"obp-{VERSION}/obp"


def model_version(policy: str, campaign: str) -> str:
    return f"obd-{policy}-{campaign}"


def post_id(campaign: str, item_id) -> np.ndarray:
    return CAMPAIGN_BASE[campaign] + np.asarray(item_id, dtype=np.int64)


def item_of(campaign: str, post_ids) -> np.ndarray:
    return np.asarray(post_ids, dtype=np.int64) - CAMPAIGN_BASE[campaign]


class OpenBanditSource:
    """The dataset files inside the obp sdist, read without extracting it."""

    def __init__(self, sdist: Path | str):
        self.path = Path(sdist)
        if not self.path.is_file():
            raise FileNotFoundError(
                f"{self.path}: no obp source distribution here; fetch it with `make run-open-bandit` "
                f"(pip download --no-deps --no-binary :all: obp=={VERSION})")
        try:
            with tarfile.open(self.path, "r:gz") as tar:
                self._names = set(tar.getnames())
        except tarfile.TarError as exc:
            raise ValueError(f"{self.path}: not a readable .tar.gz ({exc})") from exc

    def _read(self, member: str) -> bytes:
        name = f"{_ROOT}/{member}"
        if name not in self._names:
            raise ValueError(f"{self.path}: {name} is missing; is this obp {VERSION}'s sdist?")
        with tarfile.open(self.path, "r:gz") as tar:
            return tar.extractfile(name).read()

    def rounds(self, policy: str, campaign: str) -> pd.DataFrame:
        """The logged rounds: timestamp, item_id, position (1-3), click, propensity_score, user features."""
        if policy not in POLICIES or campaign not in CAMPAIGNS:
            raise ValueError(f"policy must be one of {POLICIES} and campaign one of {CAMPAIGNS}")
        raw = self._read(f"dataset/obd/{policy}/{campaign}/{campaign}.csv")
        frame = pd.read_csv(io.BytesIO(raw), index_col=0,
                            usecols=lambda col: not col.startswith("user-item_affinity"))
        missing = {"timestamp", "item_id", "position", "click", "propensity_score", *USER_FEATURES} - set(frame)
        if missing:
            raise ValueError(f"{policy}/{campaign}.csv lacks columns {sorted(missing)}")
        frame["timestamp"] = pd.to_datetime(frame["timestamp"], utc=True)
        return frame

    def items(self, campaign: str, policy: str = "random") -> pd.DataFrame:
        """The campaign's items (item_id, item_feature_0..3). Policies hash the categorical
        features differently; the random policy's file is the one used everywhere."""
        raw = self._read(f"dataset/obd/{policy}/{campaign}/item_context.csv")
        return pd.read_csv(io.BytesIO(raw), index_col=0)

    def bts_prior(self, campaign: str) -> tuple[np.ndarray, np.ndarray]:
        """(alpha, beta) of the Beta prior ZOZOTOWN's Bernoulli TS ran with (obp/policy/conf/prior_bts.yaml)."""
        import yaml

        prior = yaml.safe_load(self._read("policy/conf/prior_bts.yaml"))
        if campaign not in prior:
            raise ValueError(f"prior_bts.yaml has no campaign {campaign!r}")
        alpha = np.asarray(prior[campaign]["alpha"], dtype=np.float64)
        beta = np.asarray(prior[campaign]["beta"], dtype=np.float64)
        if alpha.shape != beta.shape or (alpha <= 0).any() or (beta <= 0).any():
            raise ValueError(f"prior_bts.yaml {campaign}: alpha and beta must be positive and of one length")
        return alpha, beta


@dataclass
class ImportSummary:
    sdist: str
    landing: str
    days: list[str] = field(default_factory=list)
    rows: dict[str, int] = field(default_factory=dict)  # lines written per log
    rounds: dict[str, int] = field(default_factory=dict)  # per policy/campaign
    clicks: dict[str, int] = field(default_factory=dict)
    files: list[str] = field(default_factory=list)

    def to_dict(self) -> dict:
        return asdict(self)


def _ts(series: pd.Series) -> list[str]:
    # ISO-8601 UTC with milliseconds and Z, the contract's form (the data has microseconds)
    return series.dt.floor("ms").dt.strftime("%Y-%m-%dT%H:%M:%S.%f").str[:-3].add("Z").tolist()


def _segment_key(frame: pd.DataFrame) -> pd.Series:
    return frame[list(USER_FEATURES)].astype(str).agg("|".join, axis=1)


def convert(sdist: Path | str, landing: Path | str, policies=POLICIES, campaigns=CAMPAIGNS) -> ImportSummary:
    """Write the chosen logs' rounds into `landing` in the landing contract."""
    source = OpenBanditSource(sdist)
    landing = Path(landing)
    rounds = {(p, k): source.rounds(p, k) for p in policies for k in campaigns}
    if not rounds:
        raise ValueError("choose at least one policy and one campaign")
    segments = sorted(set().union(*(set(_segment_key(f)) for f in rounds.values())))
    viewer_of = {key: i + 1 for i, key in enumerate(segments)}
    first = min(f["timestamp"].min() for f in rounds.values()).floor("D")
    first_day = first.strftime("%Y-%m-%d")
    start = _ts(pd.Series([first]))[0]
    lines: dict[tuple[str, str, str], list[str]] = defaultdict(list)  # (log, day, file) -> lines

    for key in segments:
        lines[("users", first_day, FILE_PREFIX)].append(json.dumps({
            c.USER_ID: viewer_of[key], c.CREATED_AT: start, c.UPDATED_AT: start,
            c.IS_PRIVATE: False, c.IS_VERIFIED: False, c.COUNTRY: None}))
    for campaign in campaigns:
        items = source.items(campaign)
        for row, pid in zip(items.itertuples(index=False), post_id(campaign, items["item_id"])):
            pid = int(pid)
            lines[("users", first_day, FILE_PREFIX)].append(json.dumps({
                c.USER_ID: pid, c.CREATED_AT: start, c.UPDATED_AT: start,
                c.IS_PRIVATE: False, c.IS_VERIFIED: False, c.COUNTRY: None}))
            tags = [f"f{i + 1}-{str(getattr(row, t))[:8]}" for i, t in enumerate(ITEM_TAGS)]
            lines[("posts", first_day, FILE_PREFIX)].append(json.dumps({
                c.POST_ID: pid, c.AUTHOR_ID: pid, c.CREATED_AT: start, c.MEDIA_TYPE: "photo",
                c.HASHTAGS: [*tags, f"campaign-{campaign}"], c.CAPTION: None, c.DELETED_AT: None}))

    summary = ImportSummary(str(sdist), str(landing))
    for (policy, campaign), frame in rounds.items():
        name = f"{FILE_PREFIX}-{policy}-{campaign}"
        tag = f"{policy}/{campaign}"
        viewers = _segment_key(frame).map(viewer_of).to_numpy()
        posts = post_id(campaign, frame["item_id"])
        request = [f"obd-{policy}-{campaign}-{i:05d}" for i in frame.index]
        ts = _ts(frame["timestamp"])
        click_ts = _ts(frame["timestamp"].dt.floor("ms") + pd.Timedelta(milliseconds=1))
        days = frame["timestamp"].dt.strftime("%Y-%m-%d").tolist()
        click_days = [t[:10] for t in click_ts]
        version = model_version(policy, campaign)
        for i in range(len(frame)):
            lines[("impressions", days[i], name)].append(json.dumps({
                c.REQUEST_ID: request[i], c.VIEWER_ID: int(viewers[i]), c.POST_ID: int(posts[i]),
                c.POSITION: int(frame["position"].iat[i]) - 1, c.SURFACE: SURFACE, c.SOURCE: SOURCE[policy],
                c.TS: ts[i], c.MODEL_VERSION: version, c.SCORE: None, c.FEATURES: None,
                c.PROPENSITY: float(frame["propensity_score"].iat[i]), c.EXPERIMENT: None, c.ARM: None}))
        clicked = np.flatnonzero(frame["click"].to_numpy() > 0)
        for i in clicked:
            lines[("engagements", click_days[i], name)].append(json.dumps({
                c.EVENT_ID: f"{request[i]}-click", c.VIEWER_ID: int(viewers[i]), c.POST_ID: int(posts[i]),
                c.AUTHOR_ID: int(posts[i]), c.TYPE: "click", c.VALUE: None, c.TS: click_ts[i],
                c.SURFACE: SURFACE, c.REQUEST_ID: request[i]}))
        summary.rounds[tag] = len(frame)
        summary.clicks[tag] = len(clicked)

    rows: Counter = Counter()
    for (log, day, name), text in sorted(lines.items()):
        path = landing / log / day / f"{name}.jsonl"
        path.parent.mkdir(parents=True, exist_ok=True)
        path.write_text("\n".join(text) + "\n")
        rows[log] += len(text)
        summary.files.append(str(path.relative_to(landing)))
    summary.rows = dict(rows)
    summary.days = sorted({day for (_, day, _) in lines})
    return summary
