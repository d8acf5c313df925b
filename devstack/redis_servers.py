"""Throwaway Redis servers run as plain child processes: one node, and the RESP helpers.

No persistence on purpose: a restarted node comes back empty, which is how the
tests simulate Redis data loss. Only `redis-server` and `redis-cli` are needed.
A Redis Cluster of these nodes is in `redis_cluster`.
"""

from __future__ import annotations

import os
import shutil
import signal
import socket
import subprocess
import time
from dataclasses import dataclass
from pathlib import Path
from types import TracebackType
from typing import IO, Any

from .ports import LOCALHOST, free_port, wait_for_port
from .procs import stop_popen

READY_TIMEOUT = 30.0


def _binary(name: str) -> str:
    path = shutil.which(name)
    if path is None:
        raise FileNotFoundError(f"{name} not found on PATH (apt-get install redis-server)")
    return path


@dataclass(frozen=True)
class Placement:
    """Where a node listens, the address others reach it at, and what it runs inside.

    The default is a node on 127.0.0.1. A node in a network namespace
    (`devstack.netns`) binds its namespace address and runs under
    `ip netns exec`; the nodes on the host then bind their side of the veth too
    and announce it, since 127.0.0.1 inside the namespace is the namespace itself.
    """

    host: str = LOCALHOST  # the address clients and the other nodes use
    bind: tuple[str, ...] = (LOCALHOST,)
    announce: bool = False  # send `host` as cluster-announce-ip (gossip and CLUSTER SLOTS)
    wrap: tuple[str, ...] = ()  # a command prefix, e.g. ("ip", "netns", "exec", name)


def _common_args(port: int, node_dir: Path, bind: tuple[str, ...]) -> list[str]:
    return [
        "--port", str(port),
        "--bind", " ".join(bind),
        "--save", "",
        "--appendonly", "no",
        "--dir", str(node_dir),
        "--maxmemory-policy", "noeviction",
        "--hash-max-listpack-value", "128",
        "--daemonize", "no",
        # Protected mode refuses clients not on loopback; a node bound to a veth
        # address (only reachable from this machine's namespaces) must accept them.
        *(["--protected-mode", "no"] if set(bind) - {LOCALHOST} else []),
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


def redis_command(port: int, *args: str, timeout: float = 5.0, host: str = LOCALHOST) -> Any:
    """Send one command to host:port over RESP (enough for PING / CLUSTER INFO / ROLE)."""
    payload = f"*{len(args)}\r\n".encode()
    for arg in args:
        data = arg.encode()
        payload += b"$%d\r\n%s\r\n" % (len(data), data)
    with socket.create_connection((host, port), timeout=timeout) as sock:
        sock.sendall(payload)
        with sock.makefile("rb") as fh:
            return _read_reply(fh)


def cluster_info(port: int, host: str = LOCALHOST, timeout: float = 5.0) -> dict[str, str]:
    """CLUSTER INFO of one node, as a dict."""
    text = redis_command(port, "CLUSTER", "INFO", host=host, timeout=timeout)
    pairs = (line.split(":", 1) for line in str(text).splitlines() if ":" in line)
    return {k: v.strip() for k, v in pairs}


def _log_tail(path: Path, lines: int = 20) -> str:
    try:
        return "\n".join(path.read_text(errors="replace").splitlines()[-lines:])
    except OSError:
        return "(no log)"


class RedisNode:
    """One redis-server child process bound to a fixed port and directory."""

    def __init__(
        self, port: int, node_dir: Path, extra: list[str], place: Placement | None = None
    ) -> None:
        self.port = port
        self.dir = node_dir
        self.log = node_dir / "redis.log"
        self.extra = extra
        self.place = place or Placement()
        self.proc: subprocess.Popen[bytes] | None = None
        self.paused = False
        self.cut_off = False  # black-holed (devstack.netns): running, but not to be asked

    @property
    def host(self) -> str:
        return self.place.host

    @property
    def pid(self) -> int | None:
        """The redis-server pid (`ip netns exec` execs it, so the same for a wrapped node)."""
        return self.proc.pid if self.proc is not None else None

    def spawn(self) -> None:
        self.dir.mkdir(parents=True, exist_ok=True)
        announce = ["--cluster-announce-ip", self.host] if self.place.announce else []
        cmd = [
            *self.place.wrap,
            _binary("redis-server"),
            *_common_args(self.port, self.dir, self.place.bind),
            *announce,
            *self.extra,
        ]
        with open(self.log, "ab") as log:
            # Own session: a Ctrl-C in the caller's terminal must not kill the server
            # before the caller has decided what to do.
            self.proc = subprocess.Popen(
                cmd, stdin=subprocess.DEVNULL, stdout=log, stderr=subprocess.STDOUT,
                cwd=self.dir, start_new_session=True,
            )  # fmt: skip
        self.paused = False

    def command(self, *args: str, timeout: float = 5.0) -> Any:
        return redis_command(self.port, *args, host=self.host, timeout=timeout)

    def wait_ready(self, timeout: float = READY_TIMEOUT) -> None:
        proc = self.proc
        try:
            wait_for_port(
                self.port,
                host=self.host,
                timeout=timeout,
                alive=lambda: proc is not None and proc.poll() is None,
            )
            deadline = time.monotonic() + timeout
            while True:  # the port opens slightly before redis answers commands
                try:
                    if self.command("PING") == "PONG":
                        return
                except (OSError, RuntimeError):
                    if time.monotonic() >= deadline:
                        raise
                time.sleep(0.05)
        except (OSError, RuntimeError) as exc:
            raise RuntimeError(
                f"redis on {self.host}:{self.port} failed to start: {exc}\n{_log_tail(self.log)}"
            ) from exc

    def running(self) -> bool:
        return self.proc is not None and self.proc.poll() is None

    def signal(self, signum: int) -> None:
        """Send `signum` to the node (SIGSTOP/SIGCONT pause and resume it)."""
        if self.proc is not None and self.proc.poll() is None:
            os.kill(self.proc.pid, signum)
            if signum == signal.SIGSTOP:
                self.paused = True
            elif signum == signal.SIGCONT:
                self.paused = False

    def stop(self, timeout: float = 10.0) -> None:
        if self.paused:
            self.signal(signal.SIGCONT)  # a stopped process ignores SIGTERM until resumed
        if self.proc is not None:
            stop_popen(self.proc, timeout)

    def kill(self) -> None:
        if self.proc is not None and self.proc.poll() is None:
            self.proc.kill()
            self.proc.wait(10.0)
        self.paused = False


class RedisSingle:
    """One standalone (non-cluster) Redis server on a free local port under base_dir."""

    def __init__(self, base_dir: Path) -> None:
        self.base_dir = Path(base_dir)
        self._node: RedisNode | None = None

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
        self._node = RedisNode(port, node_dir, [])
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
