"""A throwaway Redis Cluster: masters, optional replicas, and the operations fault tests use.

Every node runs with `cluster-require-full-coverage no`: with the default (yes) one
failed master makes every node answer CLUSTERDOWN for every slot, so a single
fault would look like a total outage and hide whether the other masters keep
serving. `repl-diskless-sync-delay 0` lets a replica sync at once instead of
after Redis's default 5 s wait.

Node indices are start order; with replicas, which node becomes a master is
decided by `redis-cli --cluster create`, so callers ask `topology()` for roles.
"""

from __future__ import annotations

import shutil
import signal
import subprocess
import time
from collections.abc import Sequence
from dataclasses import dataclass
from pathlib import Path
from types import TracebackType

from .ports import free_port_pair
from .redis_servers import READY_TIMEOUT, Placement, RedisNode, _binary, cluster_info

CLUSTER_SLOTS = 16384


@dataclass(frozen=True)
class NodeInfo:
    """One node as the cluster sees it (a line of CLUSTER NODES)."""

    index: int  # position in RedisCluster.nodes (start order)
    node_id: str
    port: int
    role: str  # "master" or "replica"
    master_id: str | None  # a replica's master
    slots: tuple[tuple[int, int], ...]  # inclusive ranges served (masters)
    failed: bool  # flagged fail or fail? by the node asked

    def serves(self, slot: int) -> bool:
        return any(lo <= slot <= hi for lo, hi in self.slots)


def _parse_slots(fields: Sequence[str]) -> tuple[tuple[int, int], ...]:
    ranges = []
    for f in fields:
        if f.startswith("["):  # a slot being imported or migrated: still served by its owner
            continue
        lo, _, hi = f.partition("-")
        ranges.append((int(lo), int(hi or lo)))
    return tuple(ranges)


class RedisCluster:
    """`masters` masters, each with `replicas` replicas, on free ports under base_dir.

    `places`, one per node in start order, puts nodes elsewhere than 127.0.0.1
    (in a network namespace, see `devstack.netns`); missing entries mean 127.0.0.1.
    """

    def __init__(
        self,
        base_dir: Path,
        masters: int = 3,
        node_timeout_ms: int = 5000,
        *,
        replicas: int = 0,
        places: Sequence[Placement] = (),
    ) -> None:
        # node_timeout_ms: a short cluster-node-timeout lets a killed-then-restarted
        # node be accepted back within seconds (FAIL is undone after 2x this), and a
        # replica take over a dead master within about 2x this.
        if masters < 1 or replicas < 0:
            raise ValueError("masters must be >= 1 and replicas >= 0")
        self.base_dir = Path(base_dir)
        self.masters = masters
        self.replicas = replicas
        self.node_timeout_ms = node_timeout_ms
        self.places = list(places)
        self._nodes: list[RedisNode] = []

    # -- what runs where ------------------------------------------------------------

    @property
    def nodes(self) -> list[tuple[str, int]]:
        """(host, port) of every node, in start order."""
        return [(n.host, n.port) for n in self._nodes]

    @property
    def pids(self) -> list[int]:
        """Pid of every node process, in start order (stale after kill_node)."""
        return [n.proc.pid for n in self._nodes if n.proc is not None]

    @property
    def nodes_str(self) -> str:
        """'host:P1,host:P2,...' of every node (replicas too) as COUNTER_REDIS_NODES expects."""
        return ",".join(f"{h}:{p}" for h, p in self.nodes)

    @property
    def log_files(self) -> list[Path]:
        return [n.log for n in self._nodes]

    def node(self, i: int) -> RedisNode:
        return self._nodes[i]

    def pid(self, i: int) -> int:
        pid = self._nodes[i].pid
        if pid is None:
            raise RuntimeError(f"node {i} was never started")
        return pid

    def index_of(self, port: int) -> int:
        for i, n in enumerate(self._nodes):
            if n.port == port:
                return i
        raise KeyError(f"no node on port {port}")

    def _reachable(self) -> list[RedisNode]:
        return [n for n in self._nodes if n.running() and not n.paused and not n.cut_off]

    def topology(self, ask: int | None = None) -> list[NodeInfo]:
        """Every node with its role and slots, from CLUSTER NODES of node `ask` (or any)."""
        asked = [self._nodes[ask]] if ask is not None else self._reachable()
        errors = []
        for node in asked:
            try:
                text = str(node.command("CLUSTER", "NODES", timeout=2.0))
                break
            except (OSError, RuntimeError) as exc:
                errors.append(f"{node.port}: {exc}")
        else:
            raise RuntimeError(f"no node answered CLUSTER NODES: {errors}")
        found = []
        for line in text.splitlines():
            parts = line.split()
            if len(parts) < 8:
                continue
            port = int(parts[1].split("@")[0].rpartition(":")[2] or 0)
            flags = parts[2].split(",")
            try:
                index = self.index_of(port)
            except KeyError:
                continue  # a node we did not start (or one forgotten): not ours to report
            found.append(
                NodeInfo(
                    index=index,
                    node_id=parts[0],
                    port=port,
                    role="master" if "master" in flags else "replica",
                    master_id=None if parts[3] == "-" else parts[3],
                    slots=_parse_slots(parts[8:]),
                    failed="fail" in flags or "fail?" in flags,
                )
            )
        return sorted(found, key=lambda info: info.index)

    def master_indices(self) -> list[int]:
        """Nodes that are masters serving slots, as the cluster sees them now."""
        return [n.index for n in self.topology() if n.role == "master" and n.slots]

    def replicas_of(self, i: int) -> list[int]:
        """Replicas of node i."""
        topo = self.topology()
        my_id = next(n.node_id for n in topo if n.index == i)
        return [n.index for n in topo if n.master_id == my_id]

    def owner_of_slot(self, slot: int) -> int:
        """Index of the master serving `slot`."""
        for n in self.topology():
            if n.role == "master" and n.serves(slot):
                return n.index
        raise RuntimeError(f"slot {slot} is not served")

    def role(self, i: int) -> str:
        """What node i says it is now: "master" or "replica" (ROLE)."""
        reply = self._nodes[i].command("ROLE", timeout=2.0)
        return "master" if reply[0] == "master" else "replica"

    # -- lifecycle ---------------------------------------------------------------------

    def _node_args(self, node_dir: Path) -> list[str]:
        return [
            "--cluster-enabled", "yes",
            "--cluster-config-file", str(node_dir / "nodes.conf"),
            "--cluster-node-timeout", str(self.node_timeout_ms),
            "--cluster-require-full-coverage", "no",
            "--repl-diskless-sync-delay", "0",
        ]  # fmt: skip

    def _new_node(self, place: Placement) -> RedisNode:
        port = free_port_pair(10000)
        node_dir = self.base_dir / str(port)
        shutil.rmtree(node_dir, ignore_errors=True)  # stale nodes.conf would break create
        node = RedisNode(port, node_dir, self._node_args(node_dir), place)
        self._nodes.append(node)
        node.spawn()
        return node

    def start(self) -> str:
        """Start the nodes, create the cluster, wait until it is ok and replicas synced."""
        if self._nodes:
            raise RuntimeError("cluster already started")
        self.base_dir.mkdir(parents=True, exist_ok=True)
        total = self.masters * (1 + self.replicas)
        places = self.places + [Placement()] * (total - len(self.places))
        try:
            for place in places[:total]:
                self._new_node(place)
            for node in self._nodes:
                node.wait_ready()
            self._create()
            self.wait_ok()
            self.wait_synced()
            self._wait_roles(self.masters * self.replicas)
        except BaseException:
            self.stop()
            raise
        return self.nodes_str

    def _redis_cli(self, *args: str, log: str, timeout: float = 120) -> str:
        cmd = [_binary("redis-cli"), "--cluster", *args]
        out = subprocess.run(
            cmd, stdin=subprocess.DEVNULL, capture_output=True, text=True, timeout=timeout
        )
        with open(self.base_dir / log, "a") as fh:
            fh.write(f"$ {' '.join(cmd)}\n{out.stdout}{out.stderr}\n")
        if out.returncode != 0 or "[ERR]" in out.stdout:
            raise RuntimeError(f"redis-cli --cluster {args[0]} failed:\n{out.stdout}{out.stderr}")
        return out.stdout

    def _create(self) -> None:
        addrs = [f"{h}:{p}" for h, p in self.nodes]
        self._redis_cli(
            "create", *addrs, "--cluster-replicas", str(self.replicas), "--cluster-yes",
            log="cluster-create.log",
        )  # fmt: skip

    def wait_ok(self, timeout: float = READY_TIMEOUT) -> None:
        """Wait until every reachable node says cluster_state:ok, all slots assigned, all
        nodes known. Killed or paused nodes are not asked (the others still know them)."""
        deadline = time.monotonic() + timeout
        last: dict[int, dict[str, str] | str] = {}
        while True:
            ok = True
            for node in self._reachable():
                try:
                    info: dict[str, str] | str = cluster_info(node.port, node.host, timeout=2.0)
                except (OSError, RuntimeError) as exc:
                    info = str(exc)
                last[node.port] = info
                if not (
                    isinstance(info, dict)
                    and info.get("cluster_state") == "ok"
                    and info.get("cluster_slots_assigned") == str(CLUSTER_SLOTS)
                    and info.get("cluster_known_nodes") == str(len(self._nodes))
                ):
                    ok = False
            if ok:
                return
            if time.monotonic() >= deadline:
                raise TimeoutError(f"redis cluster not ok after {timeout:.0f}s: {last}")
            time.sleep(0.2)

    def _wait_roles(self, replicas: int, timeout: float = READY_TIMEOUT) -> None:
        """Wait until every reachable node's view shows `replicas` replicas (gossip lags
        behind `redis-cli --cluster create`'s CLUSTER REPLICATE calls)."""
        deadline = time.monotonic() + timeout
        while True:
            views = []
            for node in self._reachable():
                try:
                    topo = self.topology(ask=self.index_of(node.port))
                    views.append(sum(n.role == "replica" for n in topo))
                except RuntimeError:
                    views.append(-1)
            if all(v == replicas for v in views):
                return
            if time.monotonic() >= deadline:
                raise TimeoutError(f"replica roles not agreed after {timeout:.0f}s: {views}")
            time.sleep(0.1)

    def wait_synced(self, timeout: float = READY_TIMEOUT) -> None:
        """Wait until every reachable replica has its replication link up."""
        deadline = time.monotonic() + timeout
        while True:
            waiting = []
            for node in self._reachable():
                try:
                    info = str(node.command("INFO", "replication", timeout=2.0))
                except (OSError, RuntimeError) as exc:
                    waiting.append(f"{node.port}: {exc}")
                    continue
                if "role:slave" in info and "master_link_status:up" not in info:
                    waiting.append(f"{node.port}: link down")
            if not waiting:
                return
            if time.monotonic() >= deadline:
                raise TimeoutError(f"replicas not in sync after {timeout:.0f}s: {waiting}")
            time.sleep(0.2)

    # -- faults --------------------------------------------------------------------------

    def kill_node(self, i: int) -> None:
        """SIGKILL node i (a crash: it loses all its data)."""
        self._nodes[i].kill()

    def pause_node(self, i: int) -> None:
        """SIGSTOP node i: it keeps its sockets open but answers nothing."""
        self._nodes[i].signal(signal.SIGSTOP)

    def resume_node(self, i: int) -> None:
        """SIGCONT node i."""
        self._nodes[i].signal(signal.SIGCONT)

    def cut_replication_link(self, replica: int, master_port: int) -> int:
        """Destroy the TCP connection replica node `replica` holds to its master
        (`ss -K`, root; the master gets an RST and drops the link). What the master
        writes afterwards never reaches the replica, even one that is paused: a paused
        replica alone would find the whole stream in its socket buffer on resuming.
        Needs a node on this host's network (not in a namespace). Returns how many
        sockets were destroyed."""
        pid = self.pid(replica)
        listing = subprocess.run(
            ["ss", "-tnpH", "state", "established", "dport", "=", f":{master_port}"],
            capture_output=True, text=True, check=True,
        ).stdout  # fmt: skip
        killed = 0
        for line in listing.splitlines():
            if f"pid={pid}," not in line:
                continue
            local = line.split()[2]  # no State column with `state established`
            host, _, sport = local.rpartition(":")
            out = subprocess.run(
                ["ss", "-K", "-tnH", "src", host, "sport", "=", f":{sport}",
                 "dport", "=", f":{master_port}"],
                capture_output=True, text=True, check=True,
            )  # fmt: skip
            killed += len(out.stdout.splitlines())
        return killed

    def set_cut_off(self, i: int, cut_off: bool) -> None:
        """Tell the helpers that node i is (no longer) black-holed: they stop asking it,
        as for a paused node, and wait_ok does not wait for it."""
        self._nodes[i].cut_off = cut_off

    def restart_node(self, i: int, timeout: float = 60.0) -> None:
        """Start node i again on the same port and nodes.conf; it rejoins EMPTY.

        Waits until the whole cluster is ok again (up to `timeout`, as other nodes
        that already marked it FAIL take 2 x node timeout to take it back).
        """
        node = self._nodes[i]
        node.kill()
        node.spawn()
        node.wait_ready()
        self.wait_ok(timeout)

    def failover(self, replica: int, option: str = "") -> None:
        """CLUSTER FAILOVER [FORCE|TAKEOVER] on replica node `replica`.

        Without an option it is the graceful, coordinated switch: the master stops
        writes until the replica has caught up, then they swap roles.
        """
        args = ["CLUSTER", "FAILOVER", *([option] if option else [])]
        reply = self._nodes[replica].command(*args)
        if reply != "OK":
            raise RuntimeError(f"CLUSTER FAILOVER on node {replica}: {reply!r}")

    def wait_promoted(self, i: int, timeout: float = READY_TIMEOUT) -> None:
        """Wait until node i is a master with slots in every reachable node's view and the
        cluster is ok on all of them (clients may still hold the old map for a moment)."""
        deadline = time.monotonic() + timeout
        while True:
            try:
                if self.role(i) == "master" and all(
                    next(n for n in self.topology(ask=j.index) if n.index == i).slots
                    for j in self._infos_reachable()
                ):
                    self.wait_ok(max(1.0, deadline - time.monotonic()))
                    return
            except (OSError, RuntimeError, StopIteration):
                pass
            if time.monotonic() >= deadline:
                raise TimeoutError(f"node {i} not promoted after {timeout:.0f}s")
            time.sleep(0.1)

    def _infos_reachable(self) -> list[NodeInfo]:
        reachable = {n.port for n in self._reachable()}
        return [n for n in self.topology() if n.port in reachable]

    def promote(self, replica: int, wait_auto: float) -> str:
        """Let the cluster promote `replica` of a dead master by itself within `wait_auto`
        seconds, else force it (FORCE, then TAKEOVER). Returns how it became master."""
        for how in ("auto", "FORCE", "TAKEOVER"):
            if how != "auto":
                self.failover(replica, how)
            try:
                self.wait_promoted(replica, wait_auto if how == "auto" else 10.0)
                return how
            except TimeoutError:
                continue
        raise TimeoutError(f"node {replica} could not be promoted")

    # -- growing -------------------------------------------------------------------------

    def add_master(self, place: Placement | None = None) -> int:
        """Start one more node and join it as an empty master (no slots yet); its index."""
        node = self._new_node(place or Placement())
        try:
            node.wait_ready()
            seed = self._reachable()[0]
            self._redis_cli(
                "add-node", f"{node.host}:{node.port}", f"{seed.host}:{seed.port}",
                log="cluster-grow.log",
            )  # fmt: skip
            self.wait_ok()
        except BaseException:
            node.kill()
            raise
        return len(self._nodes) - 1

    def rebalance(self, timeout: float = 300.0) -> str:
        """Spread slots evenly over all masters, empty ones included (moves keys with
        MIGRATE while clients keep writing); returns redis-cli's output."""
        seed = self._reachable()[0]
        out = self._redis_cli(
            "rebalance", f"{seed.host}:{seed.port}", "--cluster-use-empty-masters",
            log="cluster-grow.log", timeout=timeout,
        )  # fmt: skip
        self.wait_ok()
        return out

    def stop(self, timeout: float = 10.0) -> None:
        """SIGTERM every node, SIGKILL after `timeout`. Idempotent; keeps the dirs (logs)."""
        for node in self._nodes:
            if node.paused:
                node.signal(signal.SIGCONT)
            if node.proc is not None and node.proc.poll() is None:
                node.proc.terminate()
        for node in self._nodes:
            node.stop(timeout)

    def __enter__(self) -> RedisCluster:
        if not self._nodes:
            self.start()
        return self

    def __exit__(
        self,
        exc_type: type[BaseException] | None,
        exc: BaseException | None,
        tb: TracebackType | None,
    ) -> None:
        self.stop()
