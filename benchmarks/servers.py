"""Start and stop the HTTP apps under test, each on a free local port.

The service runs exactly as deployed (``gunicorn -c python:service.gunicorn_conf
service.wsgi:app`` configured by ``COUNTER_*``); the Python baselines run under the
same gunicorn + meinheld worker with plain command-line flags; the Go peer is one
process whose GOMAXPROCS takes the place of the worker count. Every server is
started in its own session and stopped by pid (SIGTERM, then SIGKILL of its
process group), so an interrupted run leaves no worker behind.
"""

from __future__ import annotations

import os
import subprocess
import sys
import time
import urllib.request
from dataclasses import dataclass
from pathlib import Path

import psutil

from devstack import free_port, procs

BIN = Path(sys.executable).parent
REPO = Path(__file__).resolve().parent.parent
MEINHELD = "meinheld.gmeinheld.MeinheldWorker"


@dataclass(frozen=True)
class AppSpec:
    """One configuration under test."""

    name: str  # short id used in results: service, service-gthread, ceiling, ...
    label: str  # what the report calls it
    product: bool  # False for baselines: shown as "not the product"
    module: str | None = None  # baseline WSGI target "benchmarks.baselines.x:app"
    go: bool = False  # the Go peer: one process, GOMAXPROCS = the sweep's worker count
    worker_class: str = "meinheld"  # COUNTER_WORKER_CLASS for the service
    redis_client: str = "lean"  # COUNTER_REDIS_CLIENT for the service
    default: bool = True  # measured unless --apps says otherwise
    workloads: tuple[str, ...] = ("post-spread", "post-hot", "get-spread")

    def command(self, bind: str, workers: int, env: dict[str, str]) -> list[str]:
        if self.go:
            return [env["BENCH_GO_PEER"], "-addr", bind, "-redis", env["BENCH_GO_REDIS"]]
        gunicorn = str(BIN / "gunicorn")
        if self.module is None:
            return [gunicorn, "-c", "python:service.gunicorn_conf", "service.wsgi:app"]
        return [
            gunicorn,
            "-k",
            MEINHELD,
            "-w",
            str(workers),
            "-b",
            bind,
            "--keep-alive",
            "75",
            "--log-level",
            "warning",
            "--no-control-socket",
            self.module,
        ]

    @property
    def ready_path(self) -> str:
        return "/readyz" if self.module is None and not self.go else "/healthz"


APPS = (
    AppSpec("service", "service (meinheld)", True),
    AppSpec("service-gthread", "service (gthread)", True, worker_class="gthread"),
    # The product with redis-py on the hot path instead of the lean client: measures the
    # lean client's effect (`--apps service,service-redispy,naive-incr,ceiling`).
    AppSpec(
        "service-redispy",
        "service (meinheld, redis-py client)",
        True,
        redis_client="redis-py",
        workloads=("post-spread",),
        default=False,
    ),
    AppSpec(
        "ceiling",
        "HTTP ceiling: fixed JSON",
        False,
        "benchmarks.baselines.ceiling:app",
        workloads=("post-spread",),
    ),
    AppSpec(
        "naive-incr",
        "naive redis-py INCR",
        False,
        "benchmarks.baselines.naive_incr:app",
        workloads=("post-spread", "post-hot"),
    ),
    AppSpec(
        "go-peer",
        "Go peer: net/http + redigo INCR",
        False,
        go=True,
        workloads=("post-spread", "post-hot", "get-spread"),
    ),
    AppSpec(
        "naive-pg",
        "naive PostgreSQL upsert",
        False,
        "benchmarks.baselines.naive_pg:app",
        workloads=("post-spread", "post-hot"),
    ),
)


class Server:
    """A gunicorn master; ``with Server(...) as s:`` starts it and waits until it answers."""

    def __init__(self, spec: AppSpec, workers: int, env: dict[str, str], logdir: Path) -> None:
        self.spec = spec
        self.workers = workers
        self.port = free_port()
        self.url = f"http://127.0.0.1:{self.port}"
        bind = f"127.0.0.1:{self.port}"
        metrics_dir = logdir / f"metrics-{spec.name}-{workers}-{self.port}"
        metrics_dir.mkdir(parents=True)  # prometheus multiprocess dir: must start empty
        self.env = {
            **env,
            "COUNTER_BIND": bind,
            "COUNTER_WORKERS": str(workers),
            "COUNTER_WORKER_CLASS": spec.worker_class,
            "COUNTER_REDIS_CLIENT": spec.redis_client,
            "PROMETHEUS_MULTIPROC_DIR": str(metrics_dir),
        }
        if spec.go:
            self.env["GOMAXPROCS"] = str(workers)
        self.cmd = spec.command(bind, workers, self.env)
        self.log = logdir / f"gunicorn-{spec.name}-{workers}.log"
        self.proc: subprocess.Popen[bytes] | None = None
        self.started: int | None = None

    def __enter__(self) -> Server:
        self.start()
        try:
            self.wait_ready()
        except BaseException:
            self.stop()
            raise
        return self

    def start(self) -> None:
        with open(self.log, "ab") as log:
            self.proc = subprocess.Popen(
                self.cmd,
                env=self.env,
                cwd=REPO,
                stdin=subprocess.DEVNULL,
                stdout=log,
                stderr=subprocess.STDOUT,
                start_new_session=True,
            )
        self.started = procs.start_time(self.proc.pid)

    def __exit__(self, *exc: object) -> None:
        self.stop()

    @property
    def pid(self) -> int:
        assert self.proc is not None
        return self.proc.pid

    def worker_pids(self) -> list[int]:
        """The processes serving connections: gunicorn's workers, or the Go peer itself."""
        if self.spec.go:
            return [self.pid] if self.proc is not None and self.proc.poll() is None else []
        try:
            return [c.pid for c in psutil.Process(self.pid).children()]
        except psutil.Error:
            return []

    def wait_ready(self, timeout: float = 30.0) -> None:
        deadline = time.monotonic() + timeout
        while time.monotonic() < deadline:
            if self.proc is not None and self.proc.poll() is not None:
                raise RuntimeError(f"{self.spec.name} exited early:\n{self._tail()}")
            try:
                with urllib.request.urlopen(self.url + self.spec.ready_path, timeout=2) as r:
                    serving = 1 if self.spec.go else self.workers
                    if r.status == 200 and len(self.worker_pids()) >= serving:
                        return
            except OSError:
                pass
            time.sleep(0.1)
        raise TimeoutError(f"{self.spec.name} not ready in {timeout:.0f}s:\n{self._tail()}")

    def _tail(self) -> str:
        return self.log.read_text(errors="replace")[-2000:]

    def stop(self) -> None:
        """SIGTERM the master; SIGKILL its group after 15 s; then make sure workers are gone."""
        if self.proc is None:
            return
        workers = self.worker_pids()
        procs.terminate(self.pid, self.started, timeout=15.0, group=True)
        self.proc.wait(5)
        for pid in workers:
            if not procs.wait_gone(pid, 5.0):
                try:
                    os.kill(pid, 9)
                except ProcessLookupError:
                    pass


def start_all(servers: list[Server]) -> list[Server]:
    """Start several servers at once (their start-up overlaps), wait for all; all or none."""
    try:
        for s in servers:
            s.start()
        for s in servers:
            s.wait_ready()
    except BaseException:
        stop_all(servers)
        raise
    return servers


def stop_all(servers: list[Server]) -> None:
    for s in servers:
        s.stop()
