"""Run the real service (gunicorn + meinheld) as a subprocess for end-to-end tests."""

from __future__ import annotations

import os
import subprocess
import sys
import time
import urllib.request
from pathlib import Path

import psutil

from devstack import free_port
from service.settings import Settings

BIN = Path(sys.executable).parent


def settings_env(settings: Settings, **extra: str) -> dict[str, str]:
    env = {k: v for k, v in os.environ.items() if not k.startswith("COUNTER_")}
    env["COUNTER_PG_DSN"] = settings.pg_dsn
    env["COUNTER_REDIS_CLIENT"] = settings.redis_client
    if settings.cluster:
        env["COUNTER_REDIS_NODES"] = ",".join(f"{h}:{p}" for h, p in settings.redis_nodes)
    else:
        env["COUNTER_REDIS_URL"] = settings.redis_url or ""
    env.update(extra)
    return env


class Gunicorn:
    """gunicorn -c python:service.gunicorn_conf service.wsgi:app on a free port."""

    def __init__(self, env: dict[str, str], log: Path, port: int | None = None) -> None:
        self.port = port or free_port()
        self.url = f"http://127.0.0.1:{self.port}"
        env = {"COUNTER_WORKERS": "2", **env, "COUNTER_BIND": f"127.0.0.1:{self.port}"}
        self.log = log
        self.proc = subprocess.Popen(
            [str(BIN / "gunicorn"), "-c", "python:service.gunicorn_conf", "service.wsgi:app"],
            env=env,
            stdout=log.open("wb"),
            stderr=subprocess.STDOUT,
        )

    def wait_ready(self, timeout: float = 30) -> None:
        deadline = time.monotonic() + timeout
        while time.monotonic() < deadline:
            if self.proc.poll() is not None:
                raise RuntimeError(f"gunicorn exited: {self.log.read_text()[-2000:]}")
            try:
                with urllib.request.urlopen(self.url + "/readyz", timeout=1) as resp:
                    if resp.status == 200:
                        return
            except OSError:
                time.sleep(0.2)
        raise TimeoutError(f"gunicorn not ready: {self.log.read_text()[-2000:]}")

    def stop(self, timeout: float = 30) -> int:
        if self.proc.poll() is None:
            self.proc.terminate()
        return self.proc.wait(timeout)


def listening_workers(server: Gunicorn) -> list[psutil.Process]:
    """Workers of ``server`` holding both their listeners (the master's and their own)."""
    ready = []
    for worker in psutil.Process(server.proc.pid).children():
        try:
            conns = worker.net_connections(kind="tcp")
        except psutil.NoSuchProcess:
            continue
        listening = [
            c for c in conns if c.status == psutil.CONN_LISTEN and c.laddr.port == server.port
        ]
        if len(listening) == 2:
            ready.append(worker)
    return ready
