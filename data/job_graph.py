"""Run a small graph of jobs (one Spark job per log or feature table of a day) concurrently, each
after the jobs it depends on.

A day's Spark jobs on small data are latency-bound (planning, scheduling, code generation on the
driver), not core-bound: submitting the independent ones at once from threads of one SparkSession
(Spark runs concurrent jobs of one session side by side) keeps a 2-core machine busy. The order
comes from `graphlib.TopologicalSorter` (standard library). A job that fails, or whose outcome
`ok` rejects, is not followed by its dependents: they are reported skipped, naming it.
"""

from __future__ import annotations

from collections.abc import Callable, Iterator, Mapping
from concurrent.futures import FIRST_COMPLETED, Future, ThreadPoolExecutor, wait
from dataclasses import dataclass
from graphlib import TopologicalSorter
from typing import Generic, TypeVar

R = TypeVar("R")


@dataclass(frozen=True)
class Outcome(Generic[R]):
    """One job's end: its result, the exception it raised, or why it did not run."""

    name: str
    result: R | None = None
    error: BaseException | None = None
    skipped: str | None = None  # the dependency that failed or was rejected


def run_job_graph(
    jobs: Mapping[str, Callable[[], R]],
    depends_on: Mapping[str, set[str]],
    *,
    max_concurrent: int,
    ok: Callable[[R], bool] = lambda result: True,
) -> Iterator[Outcome[R]]:
    """Yield each job's outcome as it ends (in the caller's thread). `depends_on` names, per job,
    the jobs of `jobs` it must follow; others it names (not run here) are ignored."""
    graph = TopologicalSorter({name: set(depends_on.get(name, ())) & set(jobs) for name in jobs})
    graph.prepare()
    blocked: set[str] = set()  # jobs whose dependents must not run: failed, rejected, or skipped
    with ThreadPoolExecutor(max_workers=max(1, max_concurrent), thread_name_prefix="job-graph") as pool:
        running: dict[Future, str] = {}
        while graph.is_active():
            for name in graph.get_ready():
                bad = next((d for d in sorted(depends_on.get(name, ())) if d in blocked), None)
                if bad is not None:
                    blocked.add(name)
                    graph.done(name)
                    yield Outcome(name, skipped=bad)
                    continue
                running[pool.submit(jobs[name])] = name
            if not running:
                continue
            finished, _ = wait(running, return_when=FIRST_COMPLETED)
            for future in finished:
                name = running.pop(future)
                error = future.exception()
                if error is not None:
                    blocked.add(name)
                    outcome = Outcome(name, error=error)
                else:
                    result = future.result()
                    if not ok(result):
                        blocked.add(name)
                    outcome = Outcome(name, result=result)
                graph.done(name)
                yield outcome
