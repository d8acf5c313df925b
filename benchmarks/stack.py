"""The backends of one benchmark run: a 3-master Redis Cluster and a PostgreSQL, throwaway,
plus, when the Go peer is measured, a standalone Redis node of its own (as Abacus uses one).

Both come from ``devstack`` on free local ports, so nothing touches the
machine's own Redis or PostgreSQL. The schema is applied with ``counterctl
migrate`` and one API key is made with ``counterctl keys create`` exactly as an
operator would; the write-behind flusher is started when installed, because
the service is only the product together with it (its CPU is reported).
"""

from __future__ import annotations

import os
import subprocess
import sys
from collections.abc import Iterator
from contextlib import contextmanager
from dataclasses import dataclass, field
from pathlib import Path

import psycopg

from benchmarks.baselines.naive_pg import TABLE_SQL
from devstack import PostgresServer, RedisCluster, RedisSingle, procs

BIN = Path(sys.executable).parent
REPO = Path(__file__).resolve().parent.parent
TENANT = "bench"


@dataclass
class Backends:
    redis_nodes: str
    pg_dsn: str
    api_key: str
    redis_pids: list[int]
    pg_pid: int | None
    flush_interval: float
    flusher: subprocess.Popen[bytes] | None = None
    notes: list[str] = field(default_factory=list)
    tenant: str = TENANT
    go_peer: Path | None = None  # the built Go peer binary, when it is measured
    go_redis: str = ""  # host:port of the Go peer's own Redis node

    def service_env(self) -> dict[str, str]:
        """Environment for the service, counterctl and the flusher (no stray COUNTER_*)."""
        env = {k: v for k, v in os.environ.items() if not k.startswith(("COUNTER_", "BENCH_"))}
        env.update(
            COUNTER_REDIS_NODES=self.redis_nodes,
            COUNTER_PG_DSN=self.pg_dsn,
            COUNTER_FLUSH_INTERVAL=str(self.flush_interval),
            COUNTER_FLUSHER_METRICS_PORT="0",  # no fixed port: other stacks may run here
            BENCH_REDIS_NODES=self.redis_nodes,
            BENCH_PG_DSN=self.pg_dsn,
            PYTHONUNBUFFERED="1",
        )
        if self.go_peer is not None:
            env.update(BENCH_GO_PEER=str(self.go_peer), BENCH_GO_REDIS=self.go_redis)
        return env


def _counterctl(args: list[str], env: dict[str, str]) -> str:
    out = subprocess.run(
        [str(BIN / "counterctl"), *args],
        env=env,
        cwd=REPO,
        capture_output=True,
        text=True,
        timeout=120,
        stdin=subprocess.DEVNULL,
    )
    if out.returncode != 0:
        raise RuntimeError(f"counterctl {args[0]} failed: {out.stdout}{out.stderr}")
    return out.stdout


@contextmanager
def backends(
    workdir: Path, flush_interval: float = 1.0, go_peer: Path | None = None
) -> Iterator[Backends]:
    """Start everything, yield it, and stop all of it whatever happens in between."""
    cluster = RedisCluster(workdir / "redis", masters=3)
    single = RedisSingle(workdir / "redis-go-peer")
    pg = PostgresServer()
    b: Backends | None = None
    try:
        nodes = cluster.start()
        dsn = pg.start()
        b = Backends(nodes, dsn, "", cluster.pids, pg.pid, flush_interval)
        if go_peer is not None:
            single.start()
            assert single.pid is not None
            b.redis_pids.append(single.pid)  # its CPU counts as Redis, like the cluster's
            b.go_peer, b.go_redis = go_peer, f"127.0.0.1:{single.port}"
        env = b.service_env()
        _counterctl(["migrate"], env)
        b.api_key = (
            _counterctl(["keys", "create", "--tenant", TENANT], env).strip().splitlines()[-1]
        )
        with psycopg.connect(dsn, autocommit=True) as conn:
            conn.execute(TABLE_SQL)
        flusher = BIN / "counter-flusher"
        if flusher.exists():
            with open(workdir / "flusher.log", "ab") as log:
                b.flusher = subprocess.Popen(
                    [str(flusher)],
                    env=env,
                    cwd=REPO,
                    stdin=subprocess.DEVNULL,
                    stdout=log,
                    stderr=subprocess.STDOUT,
                    start_new_session=True,
                )
        else:
            b.notes.append(
                f"{flusher} not installed: the service ran without its flusher, flush lag "
                "was not measured and memory was measured with dirty marks only."
            )
        yield b
    finally:
        if b is not None and b.flusher is not None:
            procs.terminate(b.flusher.pid, timeout=30.0, group=True)
            b.flusher.wait(5)
        cluster.stop()
        single.stop()
        pg.cleanup()
