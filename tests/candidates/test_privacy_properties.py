"""Property: over generated worlds (accounts, follows, requests, approvals, privacy changes, blocks,
mutes, posts, deletions — in any order, applied in random batch sizes), no viewer ever receives a
post from an account that blocked it or that it blocked, a muted account, a private account it is
not an approved follower of, or a deleted post. Checked on the Home read path and on arbitrary
candidates (as an Explore source would propose them), through the shared filters, on real Valkey:
one server, and a three-primary cluster (where every edge is written in two slots' steps).

The oracle (privacy_oracle.py) is an independent, plain-Python replay of the log contract's rules.
"""

from __future__ import annotations

import redis
from hypothesis import HealthCheck, given, settings
from hypothesis import strategies as st

from candidate_gen import events as ev
from candidate_gen.config import FanoutConfig
from candidate_gen.fanout import FanoutWorker
from candidate_gen.filters import default_chain
from candidate_gen.home import HomeCandidateReader
from candidate_gen.rebuild import build_feeds
from candidate_gen.records import Candidate
from data.redis_client import connect
from tests.candidates.helpers import HOUR, T0, fresh_config
from tests.candidates.privacy_oracle import N_USERS, action, to_events, user_ids

WORLDS = dict(
    private=st.sets(user_ids, max_size=4),
    actions=st.lists(action, min_size=1, max_size=60),
    batch=st.integers(1, 25),
    built=st.sets(user_ids),
)


@settings(max_examples=60, deadline=None, suppress_health_check=[HealthCheck.function_scoped_fixture])
@given(**WORLDS)
def test_no_viewer_receives_a_post_it_may_not_see(redis_server, private, actions, batch, built):
    check_world(redis.Redis.from_url(redis_server.url), private, actions, batch, built)


@settings(max_examples=25, deadline=None, suppress_health_check=[HealthCheck.function_scoped_fixture])
@given(**WORLDS)
def test_no_viewer_receives_a_post_it_may_not_see_on_a_cluster(redis_cluster, private, actions, batch, built):
    check_world(connect(redis_cluster.url), private, actions, batch, built)


def check_world(client, private, actions, batch, built) -> None:
    cfg = fresh_config(celebrity_followers=3).model_copy(update={"fanout": FanoutConfig(batch_events=batch)})
    rows, oracle = to_events(private, actions)
    accounts, rest = rows[:N_USERS], rows[N_USERS:]
    FanoutWorker(client, cfg).consume(ev.frame(accounts), None)
    build_feeds(client, cfg, sorted(built), T0)  # some viewers active (cached), others built at read
    client.sadd(cfg.keys.celebs, 1)  # user 1 is pulled at read, the others fanned out
    FanoutWorker(client, cfg).consume(ev.frame(rest), None)

    now = T0 + 100 * HOUR
    chain = default_chain(client, cfg, seen=False)
    everything = [Candidate(p, a, T0, "trending") for p, a in oracle.author.items()]
    for viewer in range(1, N_USERS + 1):
        home = HomeCandidateReader(client, cfg).read(viewer, now).candidates
        for pool in (home, everything):
            result = chain.run(viewer, pool, now)
            leaks = [c.post_id for c in result.kept if not oracle.may_see(viewer, c.post_id)]
            assert not leaks, (viewer, leaks)
            assert result.total == len(pool)
        # and nothing that may be seen is lost from arbitrary candidates (filters are not over-eager)
        kept = {c.post_id for c in chain.run(viewer, everything, now).kept}
        allowed = {p for p in oracle.author if oracle.may_see(viewer, p) and oracle.author[p] != viewer}
        assert kept == allowed
    client.delete(*client.keys(cfg.keys.pattern) or ["-"])
