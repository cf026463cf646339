"""CandidateSourcesStage: every source of a surface at once (each with its switch, cap, timeout and
fail-open policy, candidate_gen.sources.run_sources), then the pool: each group's candidates in
order; a group of several sources gives each a share of the group's size in proportion to its cap
(its best first, distinct posts; a source that returns fewer leaves its share to the others). No
interleaving: the whole pool is scored, so only *which* candidates enter matters (candidate_gen.blend's
round-robin costs ~2 ms of Python a request for an order nobody reads).

Home = [in-network sources as they come] + [out-of-network (Explore) sources blended to
`out_of_network_candidates`];
Explore = [Explore sources blended to `candidates`]. A failed or slow source is reported in the
response (`degraded["sources.<name>"]`) and contributes nothing, unless every source came back empty:
then the late ones are waited for within the remaining budget (at least `late_min_wait_ms`).
"""

from __future__ import annotations

from collections.abc import Sequence
from dataclasses import dataclass

from candidate_gen.records import Candidate
from candidate_gen.sources.base import CandidateSource, SourceRequest, run_sources
from serving.pipeline import FeedQuery, FeedState


@dataclass(frozen=True)
class SourceGroup:
    sources: tuple[CandidateSource, ...]
    size: int  # candidates the group may add to the pool


class CandidateSourcesStage:
    name = "sources"

    def __init__(self, groups: Sequence[SourceGroup], late_min_wait_ms: float = 0.0):
        self.groups = tuple(groups)
        self.late_min_wait_ms = late_min_wait_ms
        self._all = [s for g in self.groups for s in g.sources]

    def run(self, query: FeedQuery, state: FeedState) -> None:
        late_wait = max(query.deadline.remaining_ms(), self.late_min_wait_ms) if self.late_min_wait_ms else 0.0
        outcomes = run_sources(self._all, SourceRequest(query.viewer_id, query.now_ms), late_wait)
        state.outcomes = outcomes
        by_name = {o.name: o for o in outcomes}
        pool = []
        for group in self.groups:
            lists = {s.name: by_name[s.name].candidates for s in group.sources}
            if len(group.sources) == 1:
                pool.extend(next(iter(lists.values()))[: group.size])
            else:
                pool.extend(proportional(lists, {s.name: s.config.cap for s in group.sources}, group.size))
        state.candidates = pool
        for o in outcomes:
            if o.degraded:
                state.degraded[f"sources.{o.name}"] = o.status

    def fallback(self, query: FeedQuery, state: FeedState) -> None:
        state.candidates = []


def proportional(lists: dict[str, list[Candidate]], weights: dict[str, float], size: int) -> list[Candidate]:
    """Up to `size` distinct posts: each list's best, in proportion to its weight; shares a list
    cannot fill (it ran out, or its posts were already taken) go to the others, in order."""
    total = sum(weights[n] for n in lists if lists[n]) or 1.0
    quota = {n: int(size * weights[n] / total) for n in lists}
    seen: set[int] = set()
    out: list[Candidate] = []
    pos = dict.fromkeys(lists, 0)

    def take(name: str, want: int) -> None:
        items, i = lists[name], pos[name]
        while want > 0 and i < len(items):
            if items[i].post_id not in seen:  # trending and popular share many posts
                seen.add(items[i].post_id)
                out.append(items[i])
                want -= 1
            i += 1
        pos[name] = i

    for name in lists:
        take(name, quota[name])
    for name in lists:  # hand the unused shares to lists that have more
        take(name, size - len(out))
    return out
