"""The gunicorn worker: meinheld, with a listening socket of its own per worker.

PERF: meinheld workers share gunicorn's one listening socket, and whichever
worker wakes first accepts a burst of connections: with 64 keep-alive clients
arriving together one of two workers often held 50-63 of them, and that worker
alone was saturated while the other idled. Each worker here also listens on a
socket of its own bound to the same address with ``SO_REUSEPORT`` (gunicorn 27
opens it with ``reuse_port``; with older versions the worker does), and the
kernel spreads new connections evenly over all those sockets (the shared one,
held by the master, keeps a share too, accepted by whichever worker is free).

Stopping (SIGTERM from the master: a reload, a stop, or ``max_requests`` reached):
stock meinheld ends its loop within a second, dropping the requests in flight. Our
build drains instead (``DRAIN_C`` in ``deploy/build_meinheld.py``): it accepts what
is queued on this worker's listeners and closes them, so new connections go to the
other workers or instances on the port; answers the next request on each connection
with ``Connection: close``; closes connections idle for ``IDLE_GRACE`` seconds; and
exits once none is left, within gunicorn's ``graceful_timeout``.
"""

from __future__ import annotations

import logging
import os
import resource
import signal
import socket
import sys
from collections.abc import Callable, Iterable
from typing import Any

from gunicorn.glogging import Logger
from meinheld import server
from meinheld.gmeinheld import MeinheldWorker

log = logging.getLogger("counter.worker")
FRAME_STACKS = 256  # freed greenlet frame stacks kept per worker (16 KB each: 4 MB at most)
BACKEND_FDS = 512  # fds above the clients' for Redis, PostgreSQL, listeners and logs
# Seconds a draining worker keeps an idle keep-alive connection open for one more
# request (answered with Connection: close). Closing it at once would reset a client
# whose request is already on its way; waiting longer only delays the exit.
IDLE_GRACE = 2


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


_GUNICORN_ERROR = Logger.error


class _MeinheldErrors:
    """What meinheld's C code calls with ``error(exc_type, exc, traceback)``."""

    def __init__(self, logger: Any) -> None:
        self.logger = logger

    def error(self, exc_type: Any, exc: Any, tb: Any) -> None:
        self.logger.error("meinheld: %s", exc_type.__name__, exc_info=(exc_type, exc, tb))


class CounterWorker(MeinheldWorker):  # type: ignore[misc]
    """gunicorn's meinheld worker, plus its own SO_REUSEPORT listener and fd budget."""

    sockets: list[Any]  # gunicorn's listeners, inherited from the arbiter

    def __init__(self, *args: Any, **kwargs: Any) -> None:
        super().__init__(*args, **kwargs)
        # Built in the master: these are its listeners. gunicorn 27 with reuse_port
        # replaces self.sockets after fork with sockets of this worker's own.
        self.shared_sockets = list(self.sockets)
        # meinheld replaces gunicorn's Logger.error, for every logger in the process,
        # with one taking (exc_type, exc, traceback). This runs in the master too, whose
        # next log.error (a worker exiting with an error code) then crashed it: restore it,
        # and hand meinheld an object with the signature it calls.
        Logger.error = _GUNICORN_ERROR
        server.set_error_logger(_MeinheldErrors(self.log))
        self.looping = False  # meinheld's loop runs: it has taken SIGTERM and SIGINT over

    def handle_exit(self, sig: int, frame: Any) -> None:
        """SIGTERM while gunicorn's handler is in place: before meinheld's loop runs.

        meinheld's handler raises SystemExit wherever the worker is. During its boot
        that may be inside an import, where Python turns it into another error (a
        ``__set_name__`` wraps it in RuntimeError): gunicorn then saw a worker that
        failed to boot, and the master halted with status 1 on a plain stop. Before
        the loop runs nothing has been served: exit 0 at once. A signal that came just
        before the loop took over is handled in it: the worker drains, as the loop would.
        """
        self._stop_signal("SIGTERM")
        if hasattr(server, "_drain"):  # our build (``deploy/build_meinheld.py``)
            server._drain()
        else:
            server.stop()

    def handle_quit(self, sig: int, frame: Any) -> None:
        """SIGQUIT or SIGINT (a quick stop) before the loop: exit 0 at once, as above;
        meinheld's handler only asked a loop that had not started to stop."""
        self._stop_signal("SIGQUIT" if sig == signal.SIGQUIT else "SIGINT")
        server.stop(int(self.timeout))

    def _stop_signal(self, name: str) -> None:
        """End a worker that is still booting: exit 0 now, from the signal handler."""
        if not self.looping:
            self.log.info("worker %d stopped by %s while booting", os.getpid(), name)
            os._exit(0)

    def run(self) -> None:
        """``MeinheldWorker.run`` with the fd budget of ``fd_budget`` and a graceful drain."""
        shared = self.shared_sockets
        own = [s for s in self.sockets if s not in shared]  # gunicorn's, with reuse_port
        if not own:  # older gunicorn: add our own
            own = [t for t in (reuseport_twin(s, self.cfg.backlog) for s in shared) if t]
        self.sockets = [*shared, *own]
        client_limit, max_fd = fd_budget(self.cfg.worker_connections)
        server.set_keepalive(self.cfg.keepalive)
        server.set_picoev_max_fd(max_fd)
        app = self.wsgi
        if hasattr(server, "_set_client_fd_limit"):  # the build from deploy/build_meinheld.py
            server._set_client_fd_limit(client_limit)
            # PERF: reuse the 16 KB frame stack of each request's greenlet (no mmap/munmap).
            server._cache_frame_stacks(FRAME_STACKS)
            _RefusalLog(self.cfg.worker_connections).schedule()
        if hasattr(server, "_set_drain"):
            # End before the master's SIGKILL at graceful_timeout (on a stop).
            server._set_drain(max(1, int(self.cfg.graceful_timeout) - 1), IDLE_GRACE)
            if self.max_requests < sys.maxsize:  # meinheld's worker ignores max_requests
                app = Recycle(app, self.max_requests, server._drain)
        server.set_fastwatchdog(self.tmp.fileno(), self.ppid, int(self.timeout))
        server.set_listen_socket([s.fileno() for s in self.sockets])
        self.looping = True  # a stop signal from here on drains (``handle_exit``)
        try:
            server.run(app)
        except KeyboardInterrupt:
            pass
        finally:
            forget_sockets(self.sockets)
            from service.api.metrics import flush_pending

            flush_pending()  # what the last second of requests added
            log.info("worker %d stopped", os.getpid())


def forget_sockets(sockets: Iterable[Any]) -> None:
    """Detach the socket objects: meinheld has closed their fds, which may be reused."""
    for sock in sockets:
        getattr(sock, "sock", sock).detach()  # gunicorn's listeners wrap a socket


class Recycle:
    """WSGI wrapper: start draining after ``limit`` requests (gunicorn's ``max_requests``)."""

    def __init__(self, app: Any, limit: int, drain: Callable[[], None]) -> None:
        self.app = app
        self.left = limit
        self.drain = drain

    def __call__(self, environ: dict[str, Any], start_response: Any) -> Any:
        self.left -= 1
        if self.left == 0:
            log.info("max_requests reached: draining worker %d", os.getpid())
            self.drain()  # only flags it: the loop drains at its next turn
        return self.app(environ, start_response)


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
