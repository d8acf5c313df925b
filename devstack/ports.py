"""Free-port discovery and TCP readiness polling for throwaway local servers.

Every server devstack starts gets a port picked here, so nothing ever collides
with the machine's own services on their standard ports.
"""

from __future__ import annotations

import random
import socket
import time
from collections.abc import Callable

LOCALHOST = "127.0.0.1"

# Ports handed out by this process, so two servers started back to back in the
# same process never get the same port before either of them has bound it.
_handed_out: set[int] = set()


def free_port() -> int:
    """Return a port on 127.0.0.1 that nothing listens on (asks the kernel)."""
    for _ in range(50):
        with socket.socket(socket.AF_INET, socket.SOCK_STREAM) as sock:
            sock.bind((LOCALHOST, 0))
            port = int(sock.getsockname()[1])
        if port not in _handed_out:
            _handed_out.add(port)
            return port
    raise RuntimeError("could not find a free TCP port")


def port_is_free(port: int, host: str = LOCALHOST) -> bool:
    """True if `port` can be bound on `host` right now (SO_REUSEADDR, as servers do)."""
    with socket.socket(socket.AF_INET, socket.SOCK_STREAM) as sock:
        sock.setsockopt(socket.SOL_SOCKET, socket.SO_REUSEADDR, 1)
        try:
            sock.bind((host, port))
        except OSError:
            return False
    return True


def _ephemeral_low() -> int:
    try:
        with open("/proc/sys/net/ipv4/ip_local_port_range", encoding="ascii") as fh:
            return int(fh.read().split()[0])
    except (OSError, ValueError, IndexError):
        return 32768


def free_port_pair(offset: int = 10000) -> int:
    """Return a port P such that both P and P+offset are free.

    Used for Redis Cluster, whose bus listens on port+10000. Ports are drawn below
    the kernel's ephemeral range when possible, so outgoing connections cannot
    grab them between the check and the server's bind.
    """
    low, high = 10000, _ephemeral_low() - offset
    if high - low < 1000:
        low, high = 1024, 65535 - offset
    for _ in range(500):
        port = random.randint(low, high - 1)
        if port in _handed_out or port + offset in _handed_out:
            continue
        if port_is_free(port) and port_is_free(port + offset):
            _handed_out.update((port, port + offset))
            return port
    raise RuntimeError(f"could not find a free port pair (P, P+{offset})")


def port_accepts(port: int, host: str = LOCALHOST, timeout: float = 1.0) -> bool:
    """True if a TCP connection to host:port succeeds now."""
    try:
        with socket.create_connection((host, port), timeout=timeout):
            return True
    except OSError:
        return False


def wait_for_port(
    port: int,
    host: str = LOCALHOST,
    timeout: float = 30.0,
    alive: Callable[[], bool] | None = None,
) -> None:
    """Poll until host:port accepts TCP connections.

    `alive`, if given, is checked on each round so a server that died while
    starting fails fast instead of running out the timeout.
    Raises TimeoutError or RuntimeError.
    """
    deadline = time.monotonic() + timeout
    while True:
        if port_accepts(port, host):
            return
        if alive is not None and not alive():
            raise RuntimeError(
                f"process serving {host}:{port} exited before it accepted connections"
            )
        if time.monotonic() >= deadline:
            raise TimeoutError(f"{host}:{port} did not accept connections within {timeout:.0f}s")
        time.sleep(0.1)
