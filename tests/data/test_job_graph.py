"""The dependency-ordered concurrent runner the ingest and feature steps submit a day's jobs with."""

from __future__ import annotations

import threading

import pytest

from data.job_graph import run_job_graph

# explicit-signal waits; generous so a loaded machine never trips them
WAIT_S = 120


def test_independent_jobs_run_at_the_same_time():
    both_running = threading.Barrier(2, timeout=WAIT_S)  # broken (the test fails) unless both run at once
    jobs = {"a": both_running.wait, "b": both_running.wait}
    outcomes = list(run_job_graph(jobs, {}, max_concurrent=2))
    assert sorted(o.name for o in outcomes) == ["a", "b"]
    assert all(o.error is None and o.skipped is None for o in outcomes)


def test_a_job_starts_only_after_the_jobs_it_depends_on_ended():
    ended: list[str] = []
    seen_at_start: dict[str, list[str]] = {}

    def job(name):
        def run():
            seen_at_start[name] = list(ended)
            ended.append(name)
            return name
        return run

    deps = {"posts": {"users"}, "follows": {"users"}, "engagements": {"posts", "users"}}
    names = ["users", "posts", "follows", "engagements"]
    outcomes = list(run_job_graph({n: job(n) for n in names}, deps, max_concurrent=3))
    assert {o.name: o.result for o in outcomes} == {n: n for n in names}
    assert seen_at_start["users"] == []
    assert "users" in seen_at_start["posts"] and "users" in seen_at_start["follows"]
    assert {"users", "posts"} <= set(seen_at_start["engagements"])


def test_a_failed_or_rejected_job_skips_its_dependents_and_nothing_else():
    ran: list[str] = []

    def job(name, result=True):
        def run():
            ran.append(name)
            if name == "posts":
                raise RuntimeError("posts broke")
            return result
        return run

    jobs = {"users": job("users"), "posts": job("posts"), "blocks": job("blocks", result=False),
            "engagements": job("engagements"), "mutes": job("mutes"), "follows": job("follows")}
    deps = {"posts": {"users"}, "blocks": {"users"}, "engagements": {"posts"}, "mutes": {"blocks"},
            "follows": {"users", "not-run-here"}}
    outcomes = {o.name: o for o in run_job_graph(jobs, deps, max_concurrent=2, ok=bool)}
    assert isinstance(outcomes["posts"].error, RuntimeError)
    assert outcomes["engagements"].skipped == "posts"
    assert outcomes["blocks"].result is False and outcomes["mutes"].skipped == "blocks"
    assert outcomes["follows"].result is True and outcomes["users"].result is True
    assert sorted(ran) == ["blocks", "follows", "posts", "users"]


def test_a_cycle_is_refused():
    from graphlib import CycleError

    with pytest.raises(CycleError):
        list(run_job_graph({"a": lambda: 1, "b": lambda: 2}, {"a": {"b"}, "b": {"a"}}, max_concurrent=2))
