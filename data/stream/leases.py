"""Partition leases: a consumer-group worker owns the partitions it is given, one lease per partition
(`<stream prefix>:<group>:owner:{<p>}`, in the partition's slot), so two workers of one group never
apply one partition's entries at once. Taken at start, renewed at every poll; a worker that dies
gives its partitions up when its leases lapse (LEASE_S), and its pending entries are reclaimed by the
next owner.
"""

from __future__ import annotations

import contextlib
from collections.abc import Sequence

import redis

from data.stream.valkey_stream import ValkeyStream

LEASE_S = 30  # renewed at every poll (a poll waits 1 s at most for entries)


class PartitionTaken(RuntimeError):
    """Another worker of the group owns a partition this one was given."""


class PartitionLeases:
    def __init__(self, stream: ValkeyStream, group: str, partitions: Sequence[int], worker: str):
        """Take a lease on each partition (`worker` names the kind, for the error); PartitionTaken if
        another worker holds one."""
        self.partitions, self.worker = list(partitions), worker
        self._leases: list = []
        for p in self.partitions:
            lease = stream.client.lock(f"{stream.prefix}:{group}:owner:{{{p}}}", timeout=LEASE_S, blocking=False,
                                       thread_local=False)  # taken here, renewed in the polling thread
            if not lease.acquire():
                self.release()
                raise PartitionTaken(f"partition {p} of the stream is another {worker}'s (its lease lapses "
                                     f"{LEASE_S} s after that worker dies)")
            self._leases.append(lease)

    def hold(self) -> None:
        """Renew every lease; one that lapsed (an outage longer than LEASE_S) is taken again if no
        other worker took it meanwhile, else PartitionTaken."""
        for p, lease in zip(self.partitions, self._leases, strict=True):
            try:
                lease.reacquire()
            except redis.exceptions.LockNotOwnedError:
                if not lease.acquire():
                    raise PartitionTaken(f"partition {p} was taken over by another {self.worker} while this "
                                         "one could not renew its lease") from None

    def release(self) -> None:
        """Give the partitions back at once (a worker that dies gives them back after LEASE_S)."""
        for lease in self._leases:
            with contextlib.suppress(redis.exceptions.LockError):
                lease.release()
