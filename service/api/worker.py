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

import socket
from typing import Any

from meinheld.gmeinheld import MeinheldWorker


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


class CounterWorker(MeinheldWorker):  # type: ignore[misc]
    """gunicorn's meinheld worker, plus its own SO_REUSEPORT listener."""

    sockets: list[Any]  # gunicorn's listeners, inherited from the arbiter

    def run(self) -> None:
        own = [reuseport_twin(s, self.cfg.backlog) for s in self.sockets]
        self.sockets = [*self.sockets, *(s for s in own if s is not None)]
        super().run()
