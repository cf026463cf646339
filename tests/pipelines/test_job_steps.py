"""How a step that ran a job graph ends: bad input fails it naming each job, a bug is raised as itself."""

from __future__ import annotations

import dagster as dg
import pytest

from data.job_graph import run_job_graph
from pipelines.job_steps import end_step


class BadInput(Exception):
    pass


def raise_(error):
    def job():
        raise error
    return job


def outcomes(jobs, deps, ok=lambda result: True):
    return list(run_job_graph(jobs, deps, max_concurrent=2, ok=ok))


def test_every_job_ran_ends_quietly():
    end_step(outcomes({"a": lambda: 1, "b": lambda: 2}, {"b": {"a"}}), BadInput, "day 1")


def test_bad_input_fails_the_step_naming_each_job_and_why():
    ran = outcomes({"users": raise_(BadInput("users/dt=1 is missing")), "posts": lambda: 1,
                    "blocks": lambda: False, "mutes": lambda: 1, "follows": lambda: 1},
                   {"posts": {"users"}, "mutes": {"blocks"}}, ok=bool)
    with pytest.raises(dg.Failure) as failure:
        end_step(ran, BadInput, "ingesting day 1")
    text = failure.value.description
    assert text.startswith("ingesting day 1:")
    assert "users failed: users/dt=1 is missing" in text
    assert "posts: not run, users (which it depends on) failed" in text
    assert "mutes: not run, blocks (which it depends on) did not pass its blocking checks" in text
    assert "follows" not in text


def test_a_bug_is_raised_as_itself_with_the_other_jobs_in_a_note():
    ran = outcomes({"a": raise_(KeyError("k")), "b": lambda: 1, "c": raise_(BadInput("x"))}, {"b": {"a"}})
    with pytest.raises(KeyError) as error:
        end_step(ran, BadInput, "day 2")
    note = " ".join(error.value.__notes__)
    assert "b: not run, a (which it depends on) failed" in note and "c failed: x" in note
