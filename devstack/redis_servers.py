"""Throwaway Redis Cluster and single Redis servers, run as plain child processes.

No persistence on purpose: a restarted node comes back empty, which is how the
tests simulate Redis data loss. Only `redis-server` and `redis-cli` are needed.
"""

from __future__ import annotations

import shutil
import socket
import subprocess
import time
from pathlib import Path
from types import TracebackType
from typing import IO, Any

from .ports import LOCALHOST, free_port, free_port_pair, wait_for_port
from .procs import stop_popen

CLUSTER_SLOTS = 16384
READY_TIMEOUT = 30.0


def _binary(name: str) -> str:
    path = shutil.which(name)
    if path is None:
        raise FileNotFoundError(f"{name} not found on PATH (apt-get install redis-server)")
    return path


def _common_args(port: int, node_dir: Path) -> list[str]:
    return [
        "--port", str(port),
        "--bind", LOCALHOST,
        "--save", "",
        "--appendonly", "no",
        "--dir", str(node_dir),
        "--maxmemory-policy", "noeviction",
        "--hash-max-listpack-value", "128",
        "--daemonize", "no",
    ]  # fmt: skip


def _read_reply(fh: IO[bytes]) -> Any:
    line = fh.readline()
    if not line:
        raise ConnectionError("connection closed by redis")
    kind, body = line[:1], line[1:-2].decode()
    if kind == b"+":
        return body
    if kind == b"-":
        raise RuntimeError(f"redis error: {body}")
    if kind == b":":
        return int(body)
    if kind == b"$":
        size = int(body)
        return None if size < 0 else fh.read(size + 2)[:-2].decode()
    if kind == b"*":
        size = int(body)
        return None if size < 0 else [_read_reply(fh) for _ in range(size)]
    raise RuntimeError(f"unexpected redis reply: {line!r}")


def redis_command(port: int, *args: str, timeout: float = 5.0) -> Any:
    """Send one command to 127.0.0.1:port over RESP (enough for PING / CLUSTER INFO)."""
    payload = f"*{len(args)}\r\n".encode()
    for arg in args:
        data = arg.encode()
        payload += b"$%d\r\n%s\r\n" % (len(data), data)
    with socket.create_connection((LOCALHOST, port), timeout=timeout) as sock:
        sock.sendall(payload)
        with sock.makefile("rb") as fh:
            return _read_reply(fh)


def cluster_info(port: int) -> dict[str, str]:
    """CLUSTER INFO of one node, as a dict."""
    text = redis_command(port, "CLUSTER", "INFO")
    pairs = (line.split(":", 1) for line in str(text).splitlines() if ":" in line)
    return {k: v.strip() for k, v in pairs}


def _log_tail(path: Path, lines: int = 20) -> str:
    try:
        return "\n".join(path.read_text(errors="replace").splitlines()[-lines:])
    except OSError:
        return "(no log)"


class _Node:
    """One redis-server child process bound to a fixed port and directory."""

    def __init__(self, port: int, node_dir: Path, extra: list[str]) -> None:
        self.port = port
        self.dir = node_dir
        self.log = node_dir / "redis.log"
        self.extra = extra
        self.proc: subprocess.Popen[bytes] | None = None

    def spawn(self) -> None:
        self.dir.mkdir(parents=True, exist_ok=True)
        cmd = [_binary("redis-server"), *_common_args(self.port, self.dir), *self.extra]
        with open(self.log, "ab") as log:
            # Own session: a Ctrl-C in the caller's terminal must not kill the server
            # before the caller has decided what to do.
            self.proc = subprocess.Popen(
                cmd, stdin=subprocess.DEVNULL, stdout=log, stderr=subprocess.STDOUT,
                cwd=self.dir, start_new_session=True,
            )  # fmt: skip

    def wait_ready(self, timeout: float = READY_TIMEOUT) -> None:
        proc = self.proc
        try:
            wait_for_port(
                self.port, timeout=timeout, alive=lambda: proc is not None and proc.poll() is None
            )
            deadline = time.monotonic() + timeout
            while True:  # the port opens slightly before redis answers commands
                try:
                    if redis_command(self.port, "PING") == "PONG":
                        return
                except (OSError, RuntimeError):
                    if time.monotonic() >= deadline:
                        raise
                time.sleep(0.05)
        except (OSError, RuntimeError) as exc:
            raise RuntimeError(
                f"redis on port {self.port} failed to start: {exc}\n{_log_tail(self.log)}"
            ) from exc

    def running(self) -> bool:
        return self.proc is not None and self.proc.poll() is None

    def stop(self, timeout: float = 10.0) -> None:
        if self.proc is not None:
            stop_popen(self.proc, timeout)

    def kill(self) -> None:
        if self.proc is not None and self.proc.poll() is None:
            self.proc.kill()
            self.proc.wait(10.0)


class RedisCluster:
    """A `masters`-node Redis Cluster (no replicas) on free local ports under base_dir."""

    def __init__(self, base_dir: Path, masters: int = 3, node_timeout_ms: int = 5000) -> None:
        # node_timeout_ms: a short cluster-node-timeout lets a killed-then-restarted
        # node be accepted back within seconds (FAIL is undone after 2x this).
        if masters < 1:
            raise ValueError("masters must be >= 1")
        self.base_dir = Path(base_dir)
        self.masters = masters
        self.node_timeout_ms = node_timeout_ms
        self._nodes: list[_Node] = []

    @property
    def nodes(self) -> list[tuple[str, int]]:
        """(host, port) of every node, in start order."""
        return [(LOCALHOST, n.port) for n in self._nodes]

    @property
    def pids(self) -> list[int]:
        """Pid of every node process, in start order (stale after kill_node)."""
        return [n.proc.pid for n in self._nodes if n.proc is not None]

    @property
    def nodes_str(self) -> str:
        """'127.0.0.1:P1,127.0.0.1:P2,...' as COUNTER_REDIS_NODES expects."""
        return ",".join(f"{h}:{p}" for h, p in self.nodes)

    @property
    def log_files(self) -> list[Path]:
        return [n.log for n in self._nodes]

    def start(self) -> str:
        """Start the nodes, create the cluster, wait until it is ok; return nodes_str."""
        if self._nodes:
            raise RuntimeError("cluster already started")
        self.base_dir.mkdir(parents=True, exist_ok=True)
        try:
            for _ in range(self.masters):
                port = free_port_pair(10000)
                node_dir = self.base_dir / str(port)
                shutil.rmtree(node_dir, ignore_errors=True)  # stale nodes.conf would break create
                extra = [
                    "--cluster-enabled", "yes",
                    "--cluster-config-file", str(node_dir / "nodes.conf"),
                    "--cluster-node-timeout", str(self.node_timeout_ms),
                ]  # fmt: skip
                node = _Node(port, node_dir, extra)
                self._nodes.append(node)
                node.spawn()
            for node in self._nodes:
                node.wait_ready()
            self._create()
            self.wait_ok()
        except BaseException:
            self.stop()
            raise
        return self.nodes_str

    def _create(self) -> None:
        cmd = [_binary("redis-cli"), "--cluster", "create"]
        cmd += [f"{h}:{p}" for h, p in self.nodes]
        cmd += ["--cluster-replicas", "0", "--cluster-yes"]
        out = subprocess.run(
            cmd, stdin=subprocess.DEVNULL, capture_output=True, text=True, timeout=120
        )
        (self.base_dir / "cluster-create.log").write_text(out.stdout + out.stderr)
        if out.returncode != 0 or "[ERR]" in out.stdout:
            raise RuntimeError(f"redis-cli --cluster create failed:\n{out.stdout}{out.stderr}")

    def wait_ok(self, timeout: float = READY_TIMEOUT) -> None:
        """Wait until every running node reports cluster_state:ok with all slots assigned."""
        deadline = time.monotonic() + timeout
        last: dict[int, dict[str, str] | str] = {}
        while True:
            ok = True
            for node in self._nodes:
                try:
                    info: dict[str, str] | str = cluster_info(node.port)
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

    def kill_node(self, i: int) -> None:
        """SIGKILL node i (a crash: it loses all its data)."""
        self._nodes[i].kill()

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

    def stop(self, timeout: float = 10.0) -> None:
        """SIGTERM every node, SIGKILL after `timeout`. Idempotent; keeps the dirs (logs)."""
        for node in self._nodes:
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


class RedisSingle:
    """One standalone (non-cluster) Redis server on a free local port under base_dir."""

    def __init__(self, base_dir: Path) -> None:
        self.base_dir = Path(base_dir)
        self._node: _Node | None = None

    @property
    def port(self) -> int:
        if self._node is None:
            raise RuntimeError("not started")
        return self._node.port

    @property
    def url(self) -> str:
        return f"redis://{LOCALHOST}:{self.port}/0"

    @property
    def pid(self) -> int | None:
        node = self._node
        return node.proc.pid if node is not None and node.proc is not None else None

    def start(self) -> str:
        """Start the server, wait until it answers PING; return redis://127.0.0.1:P/0."""
        if self._node is not None:
            raise RuntimeError("already started")
        port = free_port()
        node_dir = self.base_dir / str(port)
        shutil.rmtree(node_dir, ignore_errors=True)
        self._node = _Node(port, node_dir, [])
        try:
            self._node.spawn()
            self._node.wait_ready()
        except BaseException:
            self.stop()
            raise
        return self.url

    def stop(self, timeout: float = 10.0) -> None:
        """SIGTERM, SIGKILL after `timeout`. Idempotent."""
        if self._node is not None:
            self._node.stop(timeout)

    def __enter__(self) -> RedisSingle:
        if self._node is None:
            self.start()
        return self

    def __exit__(
        self,
        exc_type: type[BaseException] | None,
        exc: BaseException | None,
        tb: TracebackType | None,
    ) -> None:
        self.stop()
