"""gunicorn configuration, all of it derived from ``Settings.from_env()``.

Used as ``gunicorn -c python:service.gunicorn_conf service.wsgi:app``. Nothing
is preloaded, so every worker imports the app (and opens its clients) after fork.
"""

from __future__ import annotations

import errno
import os
import shutil
import socket
import sys
import tempfile
from typing import Any

from service.api.steering import steer_to_workers
from service.logs import setup_logging
from service.migrate import LayoutMismatch, check_layout
from service.settings import Settings, SettingsError

try:
    _settings = Settings.from_env()
except SettingsError as exc:
    sys.exit(f"counter-service: {exc}")

# COUNTER_REUSE_PORT_SHARED=1: this instance may share its port with another one (a
# rolling restart: start the new instance, then SIGTERM the old, which drains; both
# need the same user, since the kernel groups SO_REUSEPORT listeners per user).
_shared = os.environ.get("COUNTER_REUSE_PORT_SHARED", "0")
if _shared not in ("0", "1"):
    sys.exit(f"counter-service: COUNTER_REUSE_PORT_SHARED={_shared!r} is invalid: 0 or 1")
share_port = _shared == "1"

# Workers share metrics through files; the directory must exist and start empty. One the
# master makes (on_starting, once its checks pass: a refused start makes none) belongs to
# this instance and is removed when it exits (on_exit); one given in the environment is
# left alone.
_own_metrics_dir: str | None = None

bind = [_settings.bind]
workers = _settings.workers
worker_class = _settings.gunicorn_worker_class
threads = _settings.threads
# Client connections per worker: meinheld answers those past it with a JSON 503 and
# closes them (service.worker), so the fds the worker needs for Redis stay free.
worker_connections = _settings.worker_connections
keepalive = 75
# meinheld workers add SO_REUSEPORT listeners of their own (service.worker); the
# shared socket must allow that too. on_starting refuses a port already served.
reuse_port = _settings.worker_class == "meinheld" or share_port
# A worker told to stop (reload, stop, max_requests) drains for up to this long
# (service.api.worker): requests in flight finish, keep-alive clients get Connection: close.
graceful_timeout = 20
timeout = 30
preload_app = False
control_socket_disable = True  # gunicorn >= 24: several instances may run on one host
accesslog = None
loglevel = _settings.log_level.lower()


def port_in_use(bind: str) -> bool:
    """Whether something already listens on ``host:port`` (unix sockets: never)."""
    if bind.startswith("unix:"):
        return False
    host, _, port = bind.rpartition(":")
    host = host.strip("[]") or "0.0.0.0"
    family = socket.AF_INET6 if ":" in host else socket.AF_INET
    with socket.socket(family, socket.SOCK_STREAM) as probe:
        probe.setsockopt(socket.SOL_SOCKET, socket.SO_REUSEADDR, 1)  # TIME_WAIT is fine
        try:
            probe.bind((host, int(port)))
        except OSError as exc:
            if exc.errno == errno.EADDRINUSE:
                return True
            raise
    return False


def on_starting(server: Any) -> None:
    """Refuse a port already served, and a bucket count other than the database's."""
    setup_logging(_settings.log_level)
    # With SO_REUSEPORT a second instance would silently share the port (and its
    # traffic) with the first, instead of failing as a plain bind does: only on request.
    if not share_port and port_in_use(_settings.bind):
        sys.exit(f"counter-service: {_settings.bind} is already in use")
    try:
        check_layout(_settings)
    except LayoutMismatch as exc:
        sys.exit(f"counter-service: {exc}")
    except Exception as exc:  # PostgreSQL unreachable at start: say so plainly.
        sys.exit(f"counter-service: cannot check the database layout: {type(exc).__name__}")
    if not os.environ.get("PROMETHEUS_MULTIPROC_DIR"):  # before any worker forks
        global _own_metrics_dir
        _own_metrics_dir = tempfile.mkdtemp(prefix="counter-metrics-")
        os.environ["PROMETHEUS_MULTIPROC_DIR"] = _own_metrics_dir
    if reuse_port and not server.LISTENERS:
        # gunicorn 27 with reuse_port gives each worker listeners of its own and the
        # master none: while every worker drains at once (a reload, max_requests reached
        # together) the port would refuse connections. A listener held by the master
        # (and inherited by every worker) keeps them queued until a new worker accepts.
        from gunicorn import sock

        server.LISTENERS = sock.create_sockets(server.cfg, server.log)
    steer(server, server.num_workers)


def nworkers_changed(server: Any, new_value: int, old_value: int | None) -> None:
    """TTIN / TTOU: steer new connections over the new number of workers."""
    if old_value is not None:  # None: the arbiter's setup, before on_starting
        steer(server, new_value)


def steer(server: Any, workers: int) -> None:
    """Send new connections to the workers' own listeners (service/api/steering.py)."""
    if _settings.worker_class != "meinheld":  # gthread workers share the master's listener
        return
    for listener in server.LISTENERS:
        sock = getattr(listener, "sock", listener)
        if sock.family not in (socket.AF_INET, socket.AF_INET6):
            continue
        try:
            steer_to_workers(sock, workers)
        except OSError as exc:  # not Linux >= 4.5, or a sandbox without it: the kernel's hash
            server.log.warning("connections not steered to the workers' listeners: %s", exc)
            return


def on_exit(server: Any) -> None:
    """Remove the metrics directory this instance made (each start used to leave one in
    the temp dir), unless a master re-executed by USR2 inherited it and still runs."""
    if _own_metrics_dir is not None and not getattr(server, "reexec_pid", 0):
        shutil.rmtree(_own_metrics_dir, ignore_errors=True)


def child_exit(server: Any, worker: Any) -> None:
    from prometheus_client import multiprocess

    multiprocess.mark_process_dead(worker.pid)  # type: ignore[no-untyped-call]
