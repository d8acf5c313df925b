"""Network namespaces that can be black-holed: a server that stops answering, without an RST.

Killing or pausing a server lets the kernel answer for it (connection refused,
or a full accept queue); a node lost behind a dead switch answers nothing at
all, and only timeouts notice. `Namespace` recreates that on one machine:

    host  ── veth ctrfault-XXXXh (198.18.a.b+1/30) ═══ ctrfault-XXXXn (…+2/30) ──  namespace
                                                                               (a server)

`silence()` puts a `pfifo limit 0` qdisc on both ends of the veth, so every
packet, either way, is dropped (SYNs, replies, retransmits: a connect or a
request times out); `restore()` removes them and TCP resumes. (`tc netem` is not
available on every kernel; a zero-length FIFO is.) Addresses are /30s from
198.18.0.0/15, the range reserved for network test beds (RFC 2544), used only on
these veths; nothing is routed beyond them.

Names carry the fixed prefix `ctrfault-`, and each namespace is registered with
its owner's pid under /run/ctrfault/, so `cleanup_leftovers()` can remove what a
crashed run left behind (its processes, veth and namespace) without touching a
namespace another live process owns. Everything here needs root and `ip`/`tc`.
"""

from __future__ import annotations

import fcntl
import ipaddress
import json
import os
import random
import shutil
import signal
import subprocess
import time
from collections.abc import Iterator, Sequence
from contextlib import contextmanager
from pathlib import Path
from types import TracebackType
from typing import Any

from . import procs

PREFIX = "ctrfault-"
NETWORK = ipaddress.IPv4Network("198.18.0.0/15")
REGISTRY = Path("/run/ctrfault")


def unavailable_reason() -> str | None:
    """Why namespaces cannot be made here (not root, no `ip`/`tc`), or None if they can."""
    if os.geteuid() != 0:
        return "network namespaces need root"
    missing = [tool for tool in ("ip", "tc") if shutil.which(tool) is None]
    if missing:
        return f"{' and '.join(missing)} not installed (apt-get install iproute2)"
    return None


def _ip(*args: str, check: bool = True, netns: str | None = None) -> str:
    cmd = ["ip", *(["-n", netns] if netns else []), *args]
    out = subprocess.run(cmd, capture_output=True, text=True, timeout=30, stdin=subprocess.DEVNULL)
    if check and out.returncode != 0:
        raise RuntimeError(f"{' '.join(cmd)} failed ({out.returncode}): {out.stderr.strip()}")
    return out.stdout


def _tc(*args: str, netns: str | None = None, check: bool = True) -> str:
    cmd = [*(["ip", "netns", "exec", netns] if netns else []), "tc", *args]
    out = subprocess.run(cmd, capture_output=True, text=True, timeout=30, stdin=subprocess.DEVNULL)
    if check and out.returncode != 0:
        raise RuntimeError(f"{' '.join(cmd)} failed ({out.returncode}): {out.stderr.strip()}")
    return out.stdout


def _namespaces() -> list[str]:
    return [line.split()[0] for line in _ip("netns", "list").splitlines() if line.strip()]


def _links() -> list[str]:
    names = []
    for line in _ip("-o", "link", "show").splitlines():
        name = line.split(":", 2)[1].strip().split("@")[0]
        names.append(name)
    return names


@contextmanager
def _registry_lock() -> Iterator[None]:
    """Serialises allocation and cleanup between processes (several test runs at once)."""
    REGISTRY.mkdir(mode=0o700, exist_ok=True)
    with open(REGISTRY / "lock", "w") as fh:
        fcntl.flock(fh, fcntl.LOCK_EX)
        try:
            yield
        finally:
            fcntl.flock(fh, fcntl.LOCK_UN)


def _owner_alive(name: str) -> bool:
    try:
        owner = json.loads((REGISTRY / f"{name}.json").read_text())
        return procs.alive(int(owner["pid"]), owner.get("start_time"))
    except (OSError, ValueError, KeyError, TypeError):
        return False


def _used_networks() -> set[ipaddress.IPv4Network]:
    used = set()
    for line in _ip("-4", "-o", "addr", "show").splitlines():
        parts = line.split()
        if "inet" in parts:
            iface = ipaddress.ip_interface(parts[parts.index("inet") + 1])
            if iface.ip in NETWORK:
                used.add(ipaddress.IPv4Network(f"{iface.ip}/30", strict=False))
    return used


def _kill_inside(name: str) -> None:
    """SIGKILL every process still in namespace `name` (one outlives `ip netns del`)."""
    for _ in range(50):
        pids = [int(p) for p in _ip("netns", "pids", name, check=False).split()]
        if not pids:
            return
        for pid in pids:
            try:
                os.kill(pid, signal.SIGCONT)  # a stopped process dies on SIGKILL anyway
                os.kill(pid, signal.SIGKILL)
            except ProcessLookupError:
                pass
        time.sleep(0.1)


def _remove(name: str) -> None:
    """Remove namespace `name`, its veth pair and registry entry, whatever is left of them."""
    if name in _namespaces():
        _kill_inside(name)
    host_if = f"{name}h"
    if host_if in _links():
        _ip("link", "del", host_if, check=False)  # deletes both ends
    _ip("netns", "del", name, check=False)
    (REGISTRY / f"{name}.json").unlink(missing_ok=True)


def cleanup_leftovers() -> list[str]:
    """Remove `ctrfault-` namespaces and veths whose owner process is gone; their names."""
    if unavailable_reason() is not None:
        return []
    removed = []
    with _registry_lock():
        names = {n for n in _namespaces() if n.startswith(PREFIX)}
        names |= {link[:-1] for link in _links() if link.startswith(PREFIX)}
        for name in sorted(names):
            if not _owner_alive(name):
                _remove(name)
                removed.append(name)
    return removed


class Namespace:
    """A network namespace joined to the host by a veth pair; create(), then close().

    `ns_addr` is the address a server inside binds; the host reaches it directly
    over the veth, and processes inside reach the host at `host_addr` (their
    default route). Processes started with `popen` are killed by `close()`.
    """

    def __init__(self, name: str, net: ipaddress.IPv4Network) -> None:
        self.name = name
        self.host_if = f"{name}h"
        self.ns_if = f"{name}n"
        hosts = list(net.hosts())
        self.host_addr, self.ns_addr = str(hosts[0]), str(hosts[1])
        self._procs: list[subprocess.Popen[bytes]] = []
        self.silenced = False

    @classmethod
    def create(cls) -> Namespace:
        """Allocate a free name and /30, create the namespace and veth pair, bring them up."""
        reason = unavailable_reason()
        if reason is not None:
            raise RuntimeError(reason)
        with _registry_lock():
            taken = set(_namespaces()) | {link[:-1] for link in _links()}
            used = _used_networks()
            for _ in range(100):
                name = f"{PREFIX}{random.randrange(16**4):04x}"  # veth names: 15 chars at most
                block = random.randrange(NETWORK.num_addresses // 4)
                net = ipaddress.IPv4Network((int(NETWORK.network_address) + 4 * block, 30))
                if name not in taken and net not in used:
                    break
            else:
                raise RuntimeError("no free ctrfault- name or /30 found")
            owner = {"pid": os.getpid(), "start_time": procs.start_time(os.getpid())}
            (REGISTRY / f"{name}.json").write_text(json.dumps(owner))
            ns = cls(name, net)
            try:
                ns._setup()
            except BaseException:
                _remove(name)
                raise
        return ns

    def _setup(self) -> None:
        _ip("netns", "add", self.name)
        _ip("link", "add", self.host_if, "type", "veth", "peer", "name", self.ns_if)
        _ip("link", "set", self.ns_if, "netns", self.name)
        _ip("addr", "add", f"{self.host_addr}/30", "dev", self.host_if)
        _ip("link", "set", self.host_if, "up")
        _ip("addr", "add", f"{self.ns_addr}/30", "dev", self.ns_if, netns=self.name)
        _ip("link", "set", self.ns_if, "up", netns=self.name)
        _ip("link", "set", "lo", "up", netns=self.name)
        _ip("route", "add", "default", "via", self.host_addr, netns=self.name)

    @property
    def wrap(self) -> tuple[str, ...]:
        """The command prefix that runs a program inside the namespace."""
        return ("ip", "netns", "exec", self.name)

    def popen(self, cmd: Sequence[str], **kwargs: Any) -> subprocess.Popen[bytes]:
        """Start `cmd` inside the namespace (its own session); close() kills it."""
        kwargs.setdefault("stdin", subprocess.DEVNULL)
        kwargs.setdefault("start_new_session", True)
        proc = subprocess.Popen([*self.wrap, *cmd], **kwargs)
        self._procs.append(proc)
        return proc

    def silence(self) -> None:
        """Drop every packet on the veth, both ways: peers see timeouts, never an RST."""
        _tc("qdisc", "replace", "dev", self.host_if, "root", "pfifo", "limit", "0")
        _tc("qdisc", "replace", "dev", self.ns_if, "root", "pfifo", "limit", "0", netns=self.name)
        self.silenced = True

    def restore(self) -> None:
        """Remove the dropping qdiscs; connections resume at their next retransmit."""
        for dev, netns in ((self.host_if, None), (self.ns_if, self.name)):
            _tc("qdisc", "del", "dev", dev, "root", netns=netns, check=False)  # none: fine
            if "pfifo" in _tc("qdisc", "show", "dev", dev, netns=netns):
                raise RuntimeError(f"the dropping qdisc on {dev} could not be removed")
        self.silenced = False

    def close(self) -> None:
        """Restore, stop what was started inside, delete the veth and namespace. Idempotent."""
        if self.silenced:
            try:
                self.restore()
            except RuntimeError:
                pass  # deleting the veth removes its qdiscs anyway
        for proc in self._procs:
            if proc.poll() is None:
                try:
                    proc.send_signal(signal.SIGCONT)
                    proc.terminate()
                except ProcessLookupError:
                    pass
        for proc in self._procs:
            try:
                proc.wait(5.0)
            except subprocess.TimeoutExpired:
                proc.kill()
                proc.wait(5.0)
        with _registry_lock():
            _remove(self.name)

    def __enter__(self) -> Namespace:
        return self

    def __exit__(
        self,
        exc_type: type[BaseException] | None,
        exc: BaseException | None,
        tb: TracebackType | None,
    ) -> None:
        self.close()
