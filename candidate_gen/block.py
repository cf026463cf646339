"""The candidate block: a request's candidates as parallel NumPy arrays, from the sources to the
response.

A Home request carries ~1,000 candidates through sources, dedupe, filters, hydration, scoring,
rescoring and selection. As Python objects each step costs a loop of attribute reads per candidate
(~1 µs each, several ms a request, all of it under the GIL the other in-flight request needs); as
columns each step is a handful of vectorised operations. The block is immutable: a step that
drops candidates takes a new block (`take`), and arrays aligned with it (features, scores) are
cut by the same mask.

`Candidate` (candidate_gen.records) stays the row view, for tests, tools and logs: iterating a
block yields rows, and `CandidateBlock.of(rows)` builds one. Nothing on the request path iterates.
"""

from __future__ import annotations

from collections.abc import Iterable, Iterator, Sequence
from dataclasses import dataclass

import numpy as np

from candidate_gen.records import Candidate

# the names a Home read gives its candidates: posts of accounts the viewer follows
IN_NETWORK_SOURCE, CELEBRITY_SOURCE = "in_network", "celebrity"
IN_NETWORK_NAMES = (IN_NETWORK_SOURCE, CELEBRITY_SOURCE)
# Every source name a block can carry (the ranking service's impression sources, data/vocabulary.toml,
# plus `supplied`: /v1/rank's caller-chosen posts, `search`: /v1/search's matches, and `stories`: the
# Stories tray's accounts, each by its newest story); a block stores the index, int8.
SOURCES = (IN_NETWORK_SOURCE, CELEBRITY_SOURCE, "trending", "embedding", "social", "popular", "supplied", "search",
           "stories")
SOURCE_CODE = {name: i for i, name in enumerate(SOURCES)}
_IN_NETWORK = np.zeros(len(SOURCES), dtype=bool)
_IN_NETWORK[[SOURCE_CODE[n] for n in IN_NETWORK_NAMES]] = True
_NAMES = np.array(SOURCES, dtype=object)


def source_code(name: str) -> int:
    try:
        return SOURCE_CODE[name]
    except KeyError:
        raise ValueError(f"unknown candidate source {name!r}; a block knows {list(SOURCES)}") from None


@dataclass(frozen=True, eq=False)
class CandidateBlock:
    post: np.ndarray  # int64 post ids
    author: np.ndarray  # int64 author ids
    created_ms: np.ndarray  # int64 creation time, epoch ms; 0 where the source did not know it
    source: np.ndarray  # int8 index into SOURCES: which source proposed the candidate
    score: np.ndarray  # float64, the source's own ordering score (recency, velocity, similarity, ...)

    # --- construction ---------------------------------------------------------------------------
    @classmethod
    def empty(cls) -> CandidateBlock:
        return cls(np.zeros(0, np.int64), np.zeros(0, np.int64), np.zeros(0, np.int64), np.zeros(0, np.int8),
                   np.zeros(0, np.float64))

    @classmethod
    def build(cls, post, author, created_ms, source: str | np.ndarray, score) -> CandidateBlock:
        """From array-likes, or scalars for all (author, created_ms, score); `source` one name for all, or codes."""
        post = np.asarray(post, dtype=np.int64)
        n = len(post)

        def column(values, dtype) -> np.ndarray:
            out = np.asarray(values, dtype=dtype)
            return np.full(n, out, dtype=dtype) if out.ndim == 0 else out

        codes = source_code(source) if isinstance(source, str) else source
        return cls(post, column(author, np.int64), column(created_ms, np.int64), column(codes, np.int8),
                   column(score, np.float64))

    @classmethod
    def of(cls, rows: Iterable[Candidate]) -> CandidateBlock:
        """From row records (tests, tools): the inverse of iterating a block."""
        rows = list(rows)
        if not rows:
            return cls.empty()
        post, author, created, source, score = zip(*rows)
        return cls.build(post, author, created, np.array([source_code(s) for s in source], dtype=np.int8), score)

    @classmethod
    def concat(cls, blocks: Sequence[CandidateBlock]) -> CandidateBlock:
        blocks = [b for b in blocks if len(b)]
        if not blocks:
            return cls.empty()
        if len(blocks) == 1:
            return blocks[0]
        return cls(*(np.concatenate([getattr(b, f) for b in blocks]) for f in _FIELDS))

    # --- access ---------------------------------------------------------------------------------
    def take(self, which: np.ndarray | slice) -> CandidateBlock:
        """The candidates a boolean mask, index array or slice selects, in that order."""
        return CandidateBlock(*(getattr(self, f)[which] for f in _FIELDS))

    @property
    def in_network(self) -> np.ndarray:
        """bool per candidate: proposed as a post of an account the viewer follows."""
        return _IN_NETWORK[self.source]

    def source_names(self, which: np.ndarray | None = None) -> list[str]:
        codes = self.source if which is None else self.source[which]
        return _NAMES[codes].tolist()

    def __len__(self) -> int:
        return len(self.post)

    def __iter__(self) -> Iterator[Candidate]:
        """Row records, for tests and tools (never on the request path)."""
        return iter(self.rows())

    def rows(self) -> list[Candidate]:
        return [Candidate(p, a, c, SOURCES[s], sc) for p, a, c, s, sc in
                zip(self.post.tolist(), self.author.tolist(), self.created_ms.tolist(), self.source.tolist(),
                    self.score.tolist(), strict=True)]

    def __getitem__(self, i: int | slice) -> Candidate | CandidateBlock:
        """A row by position, or a slice as a block (masks and index arrays: `take`)."""
        if isinstance(i, slice):
            return self.take(i)
        if not isinstance(i, (int, np.integer)):
            raise TypeError("index a block by position or slice; use take() for masks and index arrays")
        return Candidate(int(self.post[i]), int(self.author[i]), int(self.created_ms[i]), SOURCES[self.source[i]],
                         float(self.score[i]))

    def __eq__(self, other: object) -> bool:
        """The same rows, in the same order (another block, or a list of rows)."""
        if isinstance(other, CandidateBlock):
            other = other.rows()
        elif not isinstance(other, (list, tuple)):
            return NotImplemented
        return self.rows() == list(other)

    __hash__ = None  # mutable arrays inside: not a dict key

    def __repr__(self) -> str:
        return f"CandidateBlock({len(self)} candidates)"


_FIELDS = ("post", "author", "created_ms", "source", "score")


def first_occurrences(post: np.ndarray) -> np.ndarray:
    """bool mask: True at the first occurrence of each post id (order kept)."""
    keep = np.zeros(len(post), dtype=bool)
    if len(post):
        keep[np.unique(post, return_index=True)[1]] = True
    return keep
