"""gunicorn configuration, all of it derived from ``Settings.from_env()``.

Used as ``gunicorn -c python:service.gunicorn_conf service.wsgi:app``. Nothing
is preloaded, so every worker imports the app (and opens its clients) after fork.
"""

from __future__ import annotations

import os
import sys
import tempfile
from typing import Any

from service.logs import setup_logging
from service.migrate import LayoutMismatch, check_layout
from service.settings import Settings, SettingsError

try:
    _settings = Settings.from_env()
except SettingsError as exc:
    sys.exit(f"counter-service: {exc}")

# Workers share metrics through files; the directory must exist and start empty.
if not os.environ.get("PROMETHEUS_MULTIPROC_DIR"):
    os.environ["PROMETHEUS_MULTIPROC_DIR"] = tempfile.mkdtemp(prefix="counter-metrics-")

bind = [_settings.bind]
workers = _settings.workers
worker_class = _settings.gunicorn_worker_class
threads = _settings.threads
keepalive = 75
reuse_port = True  # the workers add SO_REUSEPORT listeners of their own (service.worker)
graceful_timeout = 20
timeout = 30
preload_app = False
control_socket_disable = True  # gunicorn >= 24: several instances may run on one host
accesslog = None
loglevel = _settings.log_level.lower()


def on_starting(server: Any) -> None:
    """Refuse to start with a bucket count other than the database's."""
    setup_logging(_settings.log_level)
    try:
        check_layout(_settings)
    except LayoutMismatch as exc:
        sys.exit(f"counter-service: {exc}")
    except Exception as exc:  # PostgreSQL unreachable at start: say so plainly.
        sys.exit(f"counter-service: cannot check the database layout: {type(exc).__name__}")


def post_worker_init(worker: Any) -> None:
    """In a meinheld worker, requests waiting on Redis yield to the others."""
    if _settings.worker_class == "meinheld":
        from service import coop

        coop.enable_meinheld()


def child_exit(server: Any, worker: Any) -> None:
    from prometheus_client import multiprocess

    multiprocess.mark_process_dead(worker.pid)  # type: ignore[no-untyped-call]
