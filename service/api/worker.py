"""The gunicorn worker: meinheld, with a listening socket of its own per worker.

PERF: meinheld workers share gunicorn's one listening socket, and whichever
worker wakes first accepts a burst of connections: with 64 keep-alive clients
arriving together one of two workers often held 50-63 of them, and that worker
alone was saturated while the other idled. Each worker here also listens on a
socket of its own bound to the same address with ``SO_REUSEPORT``, and the
kernel spreads new connections evenly over all those sockets (the shared one
keeps a share too, accepted by whichever worker is free).
"""

from __future__ import annotations

import logging
import os
import resource
import socket
from typing import Any

from meinheld import server
from meinheld.gmeinheld import MeinheldWorker

log = logging.getLogger("counter.worker")
FRAME_STACKS = 256  # freed greenlet frame stacks kept per worker (16 KB each: 4 MB at most)
BACKEND_FDS = 512  # fds above the clients' for Redis, PostgreSQL, listeners and logs


def reuseport_twin(shared: Any, backlog: int) -> socket.socket | None:
    """A listening socket on ``shared``'s TCP address, or None for other kinds."""
    family = shared.sock.family
    if family not in (socket.AF_INET, socket.AF_INET6):
        return None
    sock = socket.socket(family, socket.SOCK_STREAM)
    sock.setsockopt(socket.SOL_SOCKET, socket.SO_REUSEADDR, 1)
    sock.setsockopt(socket.SOL_SOCKET, socket.SO_REUSEPORT, 1)
    sock.setsockopt(socket.IPPROTO_TCP, socket.TCP_NODELAY, 1)
    sock.bind(shared.sock.getsockname())
    sock.listen(backlog)
    sock.setblocking(False)
    return sock


def fd_budget(worker_connections: int) -> tuple[int, int]:
    """``(client_fd_limit, max_fd)``: clients take fds below the first, the loop all below both.

    meinheld's loop can only wait on fds below ``max_fd`` (stock: worker_connections,
    so once clients used them up a new Redis socket could never be waited on and
    its request parked for good). Clients past ``worker_connections`` are refused
    with a 503 instead, and ``BACKEND_FDS`` more are kept for the worker's own
    sockets. The open-files limit is raised to fit when the hard limit allows.
    """
    probe = os.open(os.devnull, os.O_RDONLY)  # the lowest free fd: what is in use now
    os.close(probe)
    client_limit = probe + worker_connections
    max_fd = client_limit + BACKEND_FDS
    soft, hard = resource.getrlimit(resource.RLIMIT_NOFILE)
    if soft != resource.RLIM_INFINITY and soft < max_fd:
        want = max_fd if hard == resource.RLIM_INFINITY else min(max_fd, hard)
        resource.setrlimit(resource.RLIMIT_NOFILE, (want, hard))
        if want < max_fd:  # the hard limit is lower: fewer clients, same reserve
            max_fd = want
            client_limit = max(probe + 1, want - BACKEND_FDS)
            log.warning(
                "open-files limit %d: at most %d client connections per worker",
                want,
                client_limit - probe,
            )
    return client_limit, max_fd


class CounterWorker(MeinheldWorker):  # type: ignore[misc]
    """gunicorn's meinheld worker, plus its own SO_REUSEPORT listener and fd budget."""

    sockets: list[Any]  # gunicorn's listeners, inherited from the arbiter

    def run(self) -> None:
        """``MeinheldWorker.run`` with the fd budget of ``fd_budget`` instead of its own."""
        own = [reuseport_twin(s, self.cfg.backlog) for s in self.sockets]
        self.sockets = [*self.sockets, *(s for s in own if s is not None)]
        client_limit, max_fd = fd_budget(self.cfg.worker_connections)
        server.set_keepalive(self.cfg.keepalive)
        server.set_picoev_max_fd(max_fd)
        if hasattr(server, "_set_client_fd_limit"):  # the build from deploy/build_meinheld.py
            server._set_client_fd_limit(client_limit)
            # PERF: reuse the 16 KB frame stack of each request's greenlet (no mmap/munmap).
            server._cache_frame_stacks(FRAME_STACKS)
            _RefusalLog(self.cfg.worker_connections).schedule()
        server.set_fastwatchdog(self.tmp.fileno(), self.ppid, int(self.timeout))
        server.set_listen_socket([s.fileno() for s in self.sockets])
        try:
            server.run(self.wsgi)
        except KeyboardInterrupt:
            pass


class _RefusalLog:
    """Once a second: log and count the connections refused past the limit."""

    def __init__(self, limit: int) -> None:
        self.limit = limit
        self.seen = 0

    def schedule(self) -> None:
        server.schedule_call(1, self.tick)

    def tick(self) -> None:
        from service.api.metrics import REFUSED

        total = int(server._refused_connections())
        if total > self.seen:
            REFUSED.inc(total - self.seen)
            log.warning(
                "refused %d client connections past COUNTER_WORKER_CONNECTIONS=%d",
                total - self.seen,
                self.limit,
            )
            self.seen = total
        self.schedule()
