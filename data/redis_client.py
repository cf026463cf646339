"""One way to open the feed/feature Redis whether it is one server or a Redis Cluster.

Loupe's code is written against redis-py's client API, which both `redis.Redis` and
`redis.cluster.RedisCluster` offer; what differs is that a cluster routes each command to the node
owning its keys' hash slot, so a command or script may only take keys of one slot. `connect` picks
the client by asking the server (the URL looks the same either way), and `slot_groups` tells a
caller how to split a multi-key call so that each part stays within one slot.
"""

from __future__ import annotations

import inspect
from typing import Any

import redis
from redis.cluster import KWARGS_DISABLED_KEYS, REDIS_ALLOWED_KEYS, RedisCluster
from redis.commands.policies import (
    BasePolicyResolver,
    CommandPolicies,
    PolicyResolver,
    RequestPolicy,
    ResponsePolicy,
    StaticPolicyResolver,
)
from redis.crc import key_slot
from redis.exceptions import ClusterDownError, RedisClusterException, SlotNotCoveredError, TryAgainError

Client = redis.Redis | RedisCluster

# What a failed call can raise: redis-py's errors and, from a cluster client, RedisClusterException,
# which is not one of them (no node of the cluster answers, or keys of several slots in one call).
FAILURES = (redis.RedisError, RedisClusterException)

# A server down, restarting, loading or slow; on a cluster, a slot whose node is down or moving.
_OUTAGES = (redis.ConnectionError, redis.TimeoutError, redis.BusyLoadingError, ClusterDownError, TryAgainError,
            SlotNotCoveredError)


def is_outage(error: BaseException) -> bool:
    """Whether `error` says a server (or a cluster's node) is unavailable for now, worth waiting out
    and trying again, rather than a wrong call. A cluster no node of which answers raises redis-py's
    bare RedisClusterException, the class it also raises for keys of several slots in one call: the
    connection error it comes from tells them apart."""
    if isinstance(error, _OUTAGES):
        return True
    return type(error) is RedisClusterException and isinstance(error.__cause__, _OUTAGES)


# The probe is asked once, at start, and decides which client the process keeps: a request path's
# tight timeouts (tens of ms) must not turn a busy moment into the wrong, or no, client.
PROBE_TIMEOUT_S = 5.0

# What RedisCluster takes: its own parameters and the node connections' allowed ones. It drops
# anything else silently, but raises on `db` (a cluster has db 0 only): checked here, then dropped.
# The address comes from the URL alone.
# `retry` is one of its own parameters (the cluster-level retries); the nodes' connections never retry.
_CLUSTER_KWARGS = (
    (set(inspect.signature(RedisCluster.__init__).parameters) - {"self", "kwargs", "url", "host", "port",
                                                                 "startup_nodes"})
    | (set(REDIS_ALLOWED_KEYS) - set(KWARGS_DISABLED_KEYS) - {"db"})
)


def connect(url: str, **kwargs: Any) -> Client:
    """A client for the Redis at `url`: a `RedisCluster` if the server is a cluster node, else a
    plain `redis.Redis`, both with `kwargs` (those a cluster client has no use for are dropped:
    `health_check_interval`, `db`, ...). Raises ValueError for a cluster URL naming a db other
    than 0, and redis-py's ConnectionError if the server cannot be reached."""
    probe = redis.Redis.from_url(url, **_patient(kwargs))
    pool_kwargs = probe.connection_pool.connection_kwargs  # the URL and kwargs, resolved
    db = int(pool_kwargs.get("db") or 0)
    pool_kwargs["db"] = 0  # INFO is server-wide, and SELECT of another db fails on a cluster node
    try:
        clustered = bool(probe.info("cluster").get("cluster_enabled"))
    finally:
        probe.close()
    if not clustered:
        return redis.Redis.from_url(url, **kwargs)
    if db != 0:
        raise ValueError(f"{url} names db {db}, but it is a Redis Cluster node: a cluster has db 0 only")
    return ScriptRoutingCluster.from_url(url, policy_resolver=SCRIPTS_BY_KEYS,
                                         **{k: v for k, v in kwargs.items() if k in _CLUSTER_KWARGS})


class _ScriptsByKeys(BasePolicyResolver):
    """EVAL/EVALSHA (and functions) go to the slot of their declared keys. redis-py 7.4's cluster
    pipeline has no policy for them and asks the server for each call's keys (COMMAND GETKEYS: a
    round trip per queued script); its one-command path reads them from the arguments, and with a
    keyed policy the pipeline does too."""

    def __init__(self, fallback: PolicyResolver | None = None):
        keyed = CommandPolicies(request_policy=RequestPolicy.DEFAULT_KEYED,
                                response_policy=ResponsePolicy.DEFAULT_KEYED)
        names = ("eval", "evalsha", "eval_ro", "evalsha_ro", "fcall", "fcall_ro")
        super().__init__({"core": dict.fromkeys(names, keyed)}, fallback or StaticPolicyResolver())

    def with_fallback(self, fallback: PolicyResolver) -> PolicyResolver:
        return _ScriptsByKeys(fallback)


SCRIPTS_BY_KEYS = _ScriptsByKeys()


class ScriptRoutingCluster(RedisCluster):
    """A RedisCluster whose pipelines route scripts by their keys too (`pipeline()` does not pass
    the client's policy resolver on in redis-py 7.4, so it is set on each pipeline)."""

    def pipeline(self, transaction: Any = None, shard_hint: Any = None) -> Any:
        pipe = super().pipeline(transaction, shard_hint)
        pipe._policy_resolver = SCRIPTS_BY_KEYS
        return pipe


def is_cluster(client: object) -> bool:
    """True for a cluster client (and its pipelines): its calls must keep to one slot each."""
    return isinstance(client, RedisCluster)


def slot_groups(client: object, keys: list) -> list[list[int]]:
    """Positions of `keys` grouped by hash slot (groups in order of first appearance, positions
    ascending), so that each group can go into one multi-key command or script. A plain server
    takes any keys together: one group of all positions. No keys: no groups."""
    if not keys:
        return []
    if not is_cluster(client):
        return [list(range(len(keys)))]
    encode = client.get_encoder().encode
    groups: dict[int, list[int]] = {}
    for position, key in enumerate(keys):
        groups.setdefault(key_slot(encode(key)), []).append(position)
    return list(groups.values())


def _patient(kwargs: dict[str, Any]) -> dict[str, Any]:
    """`kwargs` with socket timeouts of at least PROBE_TIMEOUT_S (None, no timeout, stays)."""
    out = dict(kwargs)
    for name in ("socket_timeout", "socket_connect_timeout"):
        if out.get(name) is not None:
            out[name] = max(out[name], PROBE_TIMEOUT_S)
    return out


class ClientSpec:
    """How to open another client like `client`, in another process (a Spark worker): picklable,
    unlike the client. `ClientSpec(client)()` opens it; a cluster's is a `ScriptRoutingCluster`
    from one of its nodes' addresses, which learns the slot map itself."""

    def __init__(self, client: Client):
        if is_cluster(client):
            node = client.get_default_node()
            # The nodes' own connection arguments (timeouts, credentials, TLS); the client sets its
            # connect callback and retries itself.
            kwargs = {k: v for k, v in client.nodes_manager.connection_kwargs.items()
                      if k in _CLUSTER_KWARGS and k not in ("redis_connect_func", "retry")}
            self._cluster: tuple[str, int, dict[str, Any]] | None = (node.host, node.port, kwargs)
        else:
            pool = client.connection_pool
            self._cluster = None
            self._server = (pool.connection_class, dict(pool.connection_kwargs))

    def __call__(self) -> Client:
        if self._cluster is not None:
            host, port, kwargs = self._cluster
            return ScriptRoutingCluster(host=host, port=port, policy_resolver=SCRIPTS_BY_KEYS, **kwargs)
        connection_class, kwargs = self._server
        # from_pool: the client owns the pool, and its close() disconnects it
        return redis.Redis.from_pool(redis.ConnectionPool(connection_class=connection_class, **kwargs))
