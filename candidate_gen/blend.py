"""Blending several sources' candidates into one list: smooth weighted round-robin, deduplicated.

Each source contributes in proportion to its weight (by default its configured cap), best first,
interleaved so the head of the list holds every source (nginx's smooth weighted round-robin: the
source furthest behind its share goes next). A post proposed by several sources is kept once, with
the first source that placed it. This is candidate generation's blend for measurement and for
consumers without a ranker; the ranking service scores the union instead.
"""

from __future__ import annotations

from collections.abc import Mapping, Sequence

from candidate_gen.records import Candidate


def blend(lists: Mapping[str, Sequence[Candidate]], weights: Mapping[str, float], limit: int) -> list[Candidate]:
    queues = {name: list(c) for name, c in lists.items() if c and weights.get(name, 0) > 0}
    pos = dict.fromkeys(queues, 0)
    credit = dict.fromkeys(queues, 0.0)
    total = sum(weights[n] for n in queues)
    out: list[Candidate] = []
    seen: set[int] = set()
    while queues and len(out) < limit:
        for name in queues:
            credit[name] += weights[name]
        name = max(queues, key=lambda n: credit[n])
        credit[name] -= total
        queue, i = queues[name], pos[name]
        while i < len(queue) and queue[i].post_id in seen:
            i += 1
        if i < len(queue):
            out.append(queue[i])
            seen.add(queue[i].post_id)
            i += 1
        pos[name] = i
        if i >= len(queue):  # exhausted: the others share its slots from now on
            del queues[name]
            total = sum(weights[n] for n in queues)
    return out
