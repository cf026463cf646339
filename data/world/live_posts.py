"""The posts live mode publishes, and their hidden qualities (data/world/live.py; docs/live_mode.md).

A post published live takes its qualities from an earlier post of the same author (quality with
noise). The simulator's truth is extended in memory, never written; what live mode adds is kept in
a file of its own (Settings.live_posts_file), so that a later play and an evaluation of the played
days judge those posts as the play did.
"""

from __future__ import annotations

from pathlib import Path

import numpy as np

from data.world.content import live_hashtags
from data.world.truth import PostLatents, TruthModel


class LivePosts:
    """The truth's post latents, grown by the posts published live (amortised: capacity doubles).

    With `kept` (a file of live mode's own), the posts earlier plays published are read back into
    the truth first, and every publish rewrites it: a later play, or an evaluation, judges those
    posts as this one did, and new posts never reuse their ids."""

    FIELDS = ("author", "created_ms", "media", "mix", "quality")

    def __init__(self, truth: TruthModel, kept: Path | None = None):
        self.truth, self.kept = truth, kept
        self.first = len(truth.posts.author)  # the world's own posts end below this id
        self.n = self.first - 1  # highest post id
        if kept is not None and kept.exists():
            with np.load(kept) as saved:
                self._grow(self.first + len(saved["author"]))
                p = self.truth.posts
                for name in self.FIELDS:
                    getattr(p, name)[self.first:self.first + len(saved[name])] = saved[name]
                self.n += len(saved["author"])

    def _grow(self, need: int) -> None:
        p = self.truth.posts
        if need > len(p.author):
            grow = max(need, 2 * len(p.author))
            def grown(a: np.ndarray) -> np.ndarray:
                return np.concatenate([a, np.zeros((grow - len(a), *a.shape[1:]), a.dtype)])

            self.truth.posts = PostLatents(**{name: grown(getattr(p, name)) for name in self.FIELDS})

    def _keep(self) -> None:
        """Rewrite `kept` whole (tmp file + rename: a play stopped mid-write leaves the last one)."""
        p, end = self.truth.posts, self.n + 1
        self.kept.parent.mkdir(parents=True, exist_ok=True)
        tmp = self.kept.with_name(self.kept.name + ".tmp.npz")
        np.savez(tmp, **{name: getattr(p, name)[self.first:end] for name in self.FIELDS})
        tmp.replace(self.kept)

    def publish(self, rng: np.random.Generator, now_ms: int, count: int) -> list[tuple[int, int, list[str]]]:
        """`count` new posts at `now_ms`, by authors of earlier posts: [(post_id, author_id, hashtags)],
        tagged from their main topic (what trending's per-hashtag sets rank)."""
        p = self.truth.posts
        templates = rng.integers(1, self.n + 1, count)
        templates = templates[p.author[templates] > 0]  # holes in the id range are no post
        ids = np.arange(self.n + 1, self.n + 1 + len(templates))
        self._grow(int(ids[-1]) + 1 if len(ids) else 0)
        p = self.truth.posts
        p.author[ids], p.media[ids], p.mix[ids] = p.author[templates], p.media[templates], p.mix[templates]
        p.quality[ids] = p.quality[templates] + rng.normal(0.0, 0.5, len(ids)).astype(np.float32)
        p.created_ms[ids] = now_ms
        self.n += len(ids)
        if self.kept is not None and len(ids):
            self._keep()  # before the posts go onto the stream: a landed post is always kept
        tags = live_hashtags(rng, p.mix[ids].argmax(axis=1), p.mix.shape[1])
        return [(int(i), int(a), t) for i, a, t in zip(ids, p.author[ids], tags, strict=True)]


def with_live_posts(truth: TruthModel, kept: Path | None) -> TruthModel:
    """`truth` extended by the posts live mode published (none when `kept` is None or absent)."""
    LivePosts(truth, kept)
    return truth
