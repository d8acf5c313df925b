"""devstack.netns: a silenced namespace times out without an RST, and leaves nothing behind.

Needs root and iproute2; skipped otherwise. Not marked `fault`: it is quick and
guards the tool the fault scenarios and the liveness tests rely on.
"""

from __future__ import annotations

import socket
import subprocess
import sys
import textwrap
import time
from pathlib import Path

import pytest

from devstack import Placement, RedisCluster, procs
from devstack.netns import PREFIX, Namespace, cleanup_leftovers, unavailable_reason

pytestmark = pytest.mark.skipif(
    unavailable_reason() is not None, reason=f"netns: {unavailable_reason()}"
)

ECHO = textwrap.dedent(
    """
    import socketserver, sys

    class Echo(socketserver.BaseRequestHandler):
        def handle(self):
            while data := self.request.recv(100):
                self.request.sendall(data)

    socketserver.ThreadingTCPServer((sys.argv[1], int(sys.argv[2])), Echo).serve_forever()
    """
)


def _ip(*args: str) -> str:
    return subprocess.run(["ip", *args], capture_output=True, text=True, check=True).stdout


def _echo_server(ns: Namespace, port: int = 7777) -> subprocess.Popen[bytes]:
    proc = ns.popen([sys.executable, "-c", ECHO, ns.ns_addr, str(port)])
    deadline = time.monotonic() + 10
    while True:
        try:
            socket.create_connection((ns.ns_addr, port), timeout=0.5).close()
            return proc
        except OSError:
            assert time.monotonic() < deadline, "echo server in the namespace did not start"
            time.sleep(0.05)


def test_a_silenced_namespace_times_out_instead_of_refusing_and_answers_after_restore() -> None:
    with Namespace.create() as ns:
        _echo_server(ns)
        conn = socket.create_connection((ns.ns_addr, 7777), timeout=1.0)
        conn.sendall(b"ping")
        assert conn.recv(100) == b"ping"

        ns.silence()
        started = time.monotonic()
        with pytest.raises(TimeoutError):  # not ConnectionRefusedError: no RST comes back
            socket.create_connection((ns.ns_addr, 7777), timeout=1.0)
        assert time.monotonic() - started >= 0.9
        conn.sendall(b"lost?")
        with pytest.raises(TimeoutError):  # an open connection gets no reply either
            conn.recv(100)

        ns.restore()
        again = socket.create_connection((ns.ns_addr, 7777), timeout=2.0)
        again.sendall(b"back")
        assert again.recv(100) == b"back"
        conn.settimeout(5.0)  # the request sent while silenced arrives at the next retransmit
        assert conn.recv(100) == b"lost?"
        again.close()
        conn.close()


def test_close_kills_the_processes_and_removes_the_veth_and_the_namespace() -> None:
    ns = Namespace.create()
    proc = _echo_server(ns)
    ns.silence()
    ns.close()
    assert proc.poll() is not None
    assert ns.name not in _ip("netns", "list")
    assert ns.host_if not in _ip("-o", "link", "show")


CRASHING_RUN = textwrap.dedent(
    """
    import os, subprocess
    from devstack.netns import Namespace
    ns = Namespace.create()
    proc = ns.popen(["sleep", "300"], stdout=subprocess.DEVNULL, stderr=subprocess.DEVNULL)
    ns.silence()
    print(ns.name, proc.pid, flush=True)
    os._exit(1)  # a crash: nothing cleaned up
    """
)


def test_cleanup_leftovers_removes_what_a_crashed_run_left_and_spares_live_owners() -> None:
    repo = Path(__file__).resolve().parents[2]
    out = subprocess.run(
        [sys.executable, "-c", CRASHING_RUN], capture_output=True, text=True, cwd=repo, timeout=60
    )
    name, pid = out.stdout.split()
    assert name.startswith(PREFIX) and name in _ip("netns", "list"), out.stderr
    with Namespace.create() as mine:  # owned by this live process: must survive
        removed = cleanup_leftovers()
        assert name in removed
        assert mine.name not in removed and mine.name in _ip("netns", "list")
    assert procs.wait_gone(int(pid), 5.0)  # the process it started in there
    assert name not in _ip("netns", "list")
    assert f"{name}h" not in _ip("-o", "link", "show")


def test_a_cluster_node_in_a_namespace_joins_the_cluster_and_is_cut_off_when_silenced(
    tmp_path: Path,
) -> None:
    """The namespace node announces its own address, the host nodes their side of the veth:
    clients on the host and every node reach every other one (cluster bus included)."""
    with Namespace.create() as ns:
        inside = Placement(host=ns.ns_addr, bind=(ns.ns_addr,), announce=True, wrap=ns.wrap)
        outside = Placement(host=ns.host_addr, bind=("127.0.0.1", ns.host_addr), announce=True)
        cluster = RedisCluster(
            tmp_path, masters=3, node_timeout_ms=1000, places=[inside] + [outside] * 2
        )
        try:
            cluster.start()
            assert {n.port for n in cluster.topology(ask=1)} == {p for _, p in cluster.nodes}
            assert cluster.node(0).command("PING") == "PONG"

            ns.silence()
            deadline = time.monotonic() + 20
            while not next(n for n in cluster.topology(ask=1) if n.index == 0).failed:
                assert time.monotonic() < deadline, "the other nodes never noticed the silence"
                time.sleep(0.2)
            with pytest.raises(TimeoutError):
                socket.create_connection((ns.ns_addr, cluster.nodes[0][1]), timeout=0.5)

            ns.restore()
            deadline = time.monotonic() + 20
            while next(n for n in cluster.topology(ask=1) if n.index == 0).failed:
                assert time.monotonic() < deadline, "the node did not come back"
                time.sleep(0.2)
            cluster.wait_ok()
        finally:
            cluster.stop()
