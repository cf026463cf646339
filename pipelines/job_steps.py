"""How a Dagster step that ran a job graph (data/job_graph.py: a day's logs, a day's feature tables)
ends when some of its jobs did not: shared by the ingest and the feature steps."""

from __future__ import annotations

from collections.abc import Iterable

import dagster as dg

from data.job_graph import Outcome


def why_not_run(outcome: Outcome, outcomes: dict[str, Outcome]) -> str:
    """One line: the job's own error, or the dependency that kept it from running and why."""
    if outcome.error is not None:
        return f"{outcome.name} failed: {outcome.error}"
    blocker = outcomes[outcome.skipped]
    why = ("failed" if blocker.error is not None else "did not run" if blocker.skipped
           else "did not pass its blocking checks")
    return f"{outcome.name}: not run, {blocker.name} (which it depends on) {why}"


def end_step(outcomes: Iterable[Outcome], expected: type[BaseException], what: str) -> None:
    """After the graph: an unexpected exception is raised as itself (a bug: its traceback matters),
    with the other jobs' fates in a note; `expected` errors (bad input) and the jobs they kept from
    running fail the step with a dg.Failure naming each. Returns when every job ran."""
    by_name = {o.name: o for o in outcomes}
    stopped = [why_not_run(o, by_name) for o in by_name.values() if o.error is not None or o.skipped]
    unexpected = [o.error for o in by_name.values() if o.error is not None and not isinstance(o.error, expected)]
    if unexpected:
        unexpected[0].add_note(f"{what}: " + "; ".join(stopped))
        raise unexpected[0]
    if stopped:
        raise dg.Failure(description=f"{what}:\n" + "\n".join(stopped))
