"""PostTextIndex: the posts' hashtags and captions in a SQLite FTS5 index, one file in the workspace
(`Settings.search_index_file`), Loupe's own (rebuilt from the lake at will).

Layout (LAYOUT_VERSION):
    posts(doc PK, post_id UNIQUE, author_id, created_ms, hashtags, caption)
               one row per live post; hashtags space-joined, without `#`; `doc` numbers the posts in
               the order they were indexed (the lake's days in order, each day's posts by creation
               time, then the stream's), so the newest posts have the highest: post ids need not
               follow time (a team's string ids are hashed)
    post_text  FTS5 over posts(hashtags, caption), external content (rowid = doc), kept in step by
               triggers; tokenizer unicode61 with diacritics removed (cafe finds café), so `#foo` and
               `foo` are the same token; scored by BM25, a hashtag weighing HASHTAG_WEIGHT times a
               caption word
    deleted(post_id PK, deleted_ms)   every deletion seen: a creation that comes again later (a lake
                                      day re-read, a stream entry delivered twice) is not indexed
    lake_days(dt PK, fingerprint)     the lake partitions applied (lake_refresh), with their files

WAL mode: the service reads while the updater (the daily build, the stream consumer) writes; one
writer at a time (SQLite's lock; a second waits up to BUSY_TIMEOUT_S). Every write is idempotent: an
upsert by post id that rewrites a row only when it changed, a delete that also records the deletion.
"""

from __future__ import annotations

import json
import sqlite3
import threading
from collections.abc import Iterable, Sequence
from dataclasses import dataclass
from pathlib import Path

import numpy as np

from candidate_gen.search.search_terms import SearchTerms

LAYOUT_VERSION = "2"
HASHTAG_WEIGHT, CAPTION_WEIGHT = 2.0, 1.0  # BM25 column weights
BUSY_TIMEOUT_S = 30.0

_SCHEMA = f"""
CREATE TABLE IF NOT EXISTS meta (key TEXT PRIMARY KEY, value TEXT NOT NULL);
CREATE TABLE IF NOT EXISTS posts (
    doc INTEGER PRIMARY KEY, post_id INTEGER NOT NULL UNIQUE, author_id INTEGER NOT NULL,
    created_ms INTEGER NOT NULL, hashtags TEXT NOT NULL, caption TEXT NOT NULL);
CREATE VIRTUAL TABLE IF NOT EXISTS post_text USING fts5(
    hashtags, caption, content='posts', content_rowid='doc', tokenize='unicode61 remove_diacritics 2');
CREATE TRIGGER IF NOT EXISTS posts_ai AFTER INSERT ON posts BEGIN
    INSERT INTO post_text(rowid, hashtags, caption) VALUES (new.doc, new.hashtags, new.caption);
END;
CREATE TRIGGER IF NOT EXISTS posts_ad AFTER DELETE ON posts BEGIN
    INSERT INTO post_text(post_text, rowid, hashtags, caption) VALUES ('delete', old.doc, old.hashtags, old.caption);
END;
CREATE TRIGGER IF NOT EXISTS posts_au AFTER UPDATE ON posts BEGIN
    INSERT INTO post_text(post_text, rowid, hashtags, caption) VALUES ('delete', old.doc, old.hashtags, old.caption);
    INSERT INTO post_text(rowid, hashtags, caption) VALUES (new.doc, new.hashtags, new.caption);
END;
CREATE TABLE IF NOT EXISTS deleted (post_id INTEGER PRIMARY KEY, deleted_ms INTEGER NOT NULL);
CREATE TABLE IF NOT EXISTS lake_days (dt TEXT PRIMARY KEY, fingerprint TEXT NOT NULL);
INSERT OR IGNORE INTO meta(key, value) VALUES ('layout', '{LAYOUT_VERSION}');
"""

# a creation: indexed unless the post was deleted; an unchanged row is not rewritten (nor re-indexed)
_UPSERT = """
INSERT INTO posts(post_id, author_id, created_ms, hashtags, caption)
SELECT ?1, ?2, ?3, ?4, ?5 WHERE NOT EXISTS (SELECT 1 FROM deleted WHERE post_id = ?1)
ON CONFLICT(post_id) DO UPDATE SET author_id = excluded.author_id, created_ms = excluded.created_ms,
    hashtags = excluded.hashtags, caption = excluded.caption
WHERE posts.author_id != excluded.author_id OR posts.created_ms != excluded.created_ms
    OR posts.hashtags != excluded.hashtags OR posts.caption != excluded.caption
"""

# the newest matches (FTS5 reads its doclists newest first and stops at the limit), each with its BM25:
# ranking every match of a common word by BM25 costs ~1 µs a match (45k posts hold "dinner" on the
# medium world: ~50 ms), the newest 1,000 ~3 ms
_HASHTAGS = "SELECT post_id, hashtags FROM posts WHERE post_id IN (SELECT value FROM json_each(?))"
_MATCH = f"""
SELECT p.post_id, p.author_id, p.created_ms, -bm25(post_text, {HASHTAG_WEIGHT}, {CAPTION_WEIGHT})
FROM post_text JOIN posts AS p ON p.doc = post_text.rowid
WHERE post_text MATCH ? ORDER BY post_text.rowid DESC LIMIT ?
"""


class IndexMissing(RuntimeError):
    """No search index at the configured path (not built yet), or not one of this layout."""


@dataclass(frozen=True)
class PostText:
    """One post's searchable text, as the posts log says it."""

    post_id: int
    author_id: int
    created_ms: int
    hashtags: Sequence[str] | None
    caption: str | None


@dataclass(frozen=True)
class Matches:
    """Posts matching a query, best first: parallel arrays."""

    post: np.ndarray  # int64
    author: np.ndarray  # int64
    created_ms: np.ndarray  # int64
    relevance: np.ndarray  # float64, -BM25 (> 0, higher is a better match)

    def __len__(self) -> int:
        return len(self.post)


def hashtag_text(tags: Iterable[str] | None) -> str:
    """A post's hashtags as indexed: space-joined, without a leading `#`."""
    return " ".join(str(t).lstrip("#") for t in tags or () if t is not None)


class PostTextIndex:
    """A writer's handle on the index file (created with its folder when absent)."""

    def __init__(self, path: Path | str):
        self.path = Path(path)
        self.path.parent.mkdir(parents=True, exist_ok=True)
        self.db = sqlite3.connect(self.path, timeout=BUSY_TIMEOUT_S, isolation_level=None)
        self.db.execute("PRAGMA journal_mode=WAL")
        self.db.execute("PRAGMA synchronous=NORMAL")  # WAL: durable at checkpoints, never corrupt
        layout = _layout(self.db)
        if layout is None:  # a new file: the whole layout in one transaction (idempotent statements)
            self.db.executescript(f"BEGIN IMMEDIATE;{_SCHEMA}COMMIT;")
        elif layout != LAYOUT_VERSION:
            raise IndexMissing(f"{self.path} holds search index layout {layout}, not {LAYOUT_VERSION}: "
                               "remove it and build again (it is Loupe's own, rebuilt from the lake)")

    def transaction(self):
        return _Transaction(self.db)

    def upsert(self, posts: Iterable[PostText]) -> int:
        """Index these posts (insert, or update those whose text changed); a post deleted before is
        left out. Returns the rows written."""
        with self.transaction():
            return self.db.executemany(_UPSERT, ((p.post_id, p.author_id, p.created_ms, hashtag_text(p.hashtags),
                                                  p.caption or "") for p in posts)).rowcount

    def delete(self, deletions: Iterable[tuple[int, int]]) -> int:
        """(post_id, deleted_ms): out of the index, and remembered as deleted. Returns posts removed."""
        rows = list(deletions)
        with self.transaction():
            self.db.executemany("INSERT OR IGNORE INTO deleted(post_id, deleted_ms) VALUES (?, ?)", rows)
            return self.db.executemany("DELETE FROM posts WHERE post_id = ?", ((p,) for p, _ in rows)).rowcount

    def count(self) -> int:
        return self.db.execute("SELECT count(*) FROM posts").fetchone()[0]

    def optimize(self) -> None:
        """Merge the FTS5 segments (after a large build: fewer b-trees for each query to read)."""
        self.db.execute("INSERT INTO post_text(post_text) VALUES ('optimize')")

    def close(self) -> None:
        self.db.close()

    def __enter__(self) -> PostTextIndex:
        return self

    def __exit__(self, *exc) -> None:
        self.close()


class SearchIndexReader:
    """The service's reads: one read-only connection per thread, opened on first use; WAL lets each
    query see the updater's last commit. A file absent (not built yet) is IndexMissing, every time
    until it appears."""

    def __init__(self, path: Path | str):
        self.path = Path(path)
        self._local = threading.local()

    def _connection(self) -> sqlite3.Connection:
        db = getattr(self._local, "db", None)
        if db is None:
            if not self.path.is_file():
                raise IndexMissing(f"no search index at {self.path}: build it (the candidates/search_index "
                                   "asset, or python -m candidate_gen search-index)")
            db = sqlite3.connect(f"file:{self.path}?mode=ro", uri=True, check_same_thread=False)
            try:
                layout = _layout(db)
            except sqlite3.DatabaseError as exc:
                db.close()
                raise IndexMissing(f"{self.path} is not a search index: {exc}") from None
            if layout != LAYOUT_VERSION:
                db.close()
                raise IndexMissing(f"{self.path} holds search index layout {layout}, not {LAYOUT_VERSION}")
            self._local.db = db
        return db

    def match(self, terms: SearchTerms, limit: int, prefix: bool = False) -> Matches:
        """The newest `limit` posts matching every word (each a prefix, with `prefix`), newest first,
        with their BM25 relevance."""
        rows = self._connection().execute(_MATCH, (terms.expression(prefix), limit)).fetchall()
        if not rows:
            z = np.zeros(0, np.int64)
            return Matches(z, z, z, np.zeros(0, np.float64))
        post, author, created, relevance = zip(*rows, strict=True)
        return Matches(np.array(post, np.int64), np.array(author, np.int64), np.array(created, np.int64),
                       np.array(relevance, np.float64))

    def hashtags(self, post_ids: Iterable[int]) -> dict[int, list[str]]:
        """The indexed posts' hashtags, lower-cased words (a post not indexed, or deleted, is absent)."""
        rows = self._connection().execute(_HASHTAGS, (json.dumps([int(p) for p in post_ids]),)).fetchall()
        return {post: tags.lower().split() for post, tags in rows if tags}

    def close(self) -> None:
        db = getattr(self._local, "db", None)
        if db is not None:
            db.close()
            self._local.db = None


def _layout(db: sqlite3.Connection) -> str | None:
    if db.execute("SELECT 1 FROM sqlite_master WHERE type = 'table' AND name = 'meta'").fetchone() is None:
        return None
    row = db.execute("SELECT value FROM meta WHERE key = 'layout'").fetchone()
    return row[0] if row else None


class _Transaction:
    """BEGIN IMMEDIATE ... COMMIT (ROLLBACK on an exception): the writer's lock taken at once."""

    def __init__(self, db: sqlite3.Connection):
        self.db = db

    def __enter__(self) -> sqlite3.Connection:
        self.db.execute("BEGIN IMMEDIATE")
        return self.db

    def __exit__(self, kind, exc, tb) -> None:
        self.db.execute("COMMIT" if kind is None else "ROLLBACK")
