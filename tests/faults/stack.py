"""What a fault scenario runs against: a Redis Cluster, PostgreSQL, the service, flushers.

The service is gunicorn + meinheld started as in `tests/e2e/server.py`; the
flushers are real `counter-flusher` processes. Setup and final flushes go
through `counterctl` (migrate, keys create, flush --once) rather than service
internals, so the suite keeps working while `service/` is restructured. The
one internal used is `service.keys` (a counter's bucket, its slot, its node).
"""

from __future__ import annotations

import json
import os
import signal
import subprocess
import sys
import time
import urllib.error
import urllib.request
import uuid
from collections.abc import Sequence
from pathlib import Path

import psycopg
from redis import Redis
from redis.crc import key_slot

from devstack import RedisCluster
from service import keys
from tests.e2e.server import Gunicorn

BIN = Path(sys.executable).parent
BUCKETS = 4096


def base_env(pg_dsn: str, nodes: str, **extra: str) -> dict[str, str]:
    env = {k: v for k, v in os.environ.items() if not k.startswith(("COUNTER_", "PG"))}
    env.update(COUNTER_PG_DSN=pg_dsn, COUNTER_REDIS_NODES=nodes, COUNTER_LOG_LEVEL="WARNING")
    env.update(extra)
    return env


def counterctl(env: dict[str, str], *args: str, timeout: float = 120) -> str:
    out = subprocess.run(
        [str(BIN / "counterctl"), *args], env=env, capture_output=True, text=True,
        timeout=timeout, stdin=subprocess.DEVNULL,
    )  # fmt: skip
    if out.returncode != 0:
        raise RuntimeError(f"counterctl {' '.join(args)} failed: {out.stdout}{out.stderr}")
    return out.stdout


class FaultStack:
    """One scenario's service and flushers on a cluster and database it is handed."""

    def __init__(
        self,
        workdir: Path,
        cluster: RedisCluster,
        pg_dsn: str,
        *,
        flushers: Sequence[str] = ("a",),
        redis_timeout: float = 1.0,
        flush_interval: float = 0.5,
    ) -> None:
        self.workdir = workdir
        self.cluster = cluster
        self.pg_dsn = pg_dsn
        self.env = base_env(pg_dsn, cluster.nodes_str, COUNTER_FLUSHER_METRICS_PORT="0")
        self.env["COUNTER_FLUSH_INTERVAL"] = str(flush_interval)
        self.redis_timeout = redis_timeout
        self.tenant = f"f{uuid.uuid4().hex[:12]}"
        self.api_key = ""
        self.web: Gunicorn | None = None
        self.flushers: dict[str, subprocess.Popen[bytes]] = {}
        self._flusher_names = list(flushers)

    # -- lifecycle ------------------------------------------------------------------

    def start(self) -> FaultStack:
        counterctl(self.env, "migrate")
        self.api_key = counterctl(self.env, "keys", "create", "--tenant", self.tenant).split()[-1]
        web_env = dict(self.env, COUNTER_REDIS_TIMEOUT=str(self.redis_timeout), COUNTER_WORKERS="2")
        self.web = Gunicorn(web_env, self.workdir / "gunicorn.log")
        self.web.wait_ready(60)
        for name in self._flusher_names:
            self.start_flusher(name)
        return self

    def start_flusher(self, name: str) -> subprocess.Popen[bytes]:
        """Start `counter-flusher`; its PostgreSQL sessions are named flusher-<name>."""
        env = dict(self.env, PGAPPNAME=f"flusher-{name}")
        with open(self.workdir / f"flusher-{name}.log", "ab") as log:
            proc = subprocess.Popen(
                [str(BIN / "counter-flusher")], env=env, stdout=log, stderr=subprocess.STDOUT,
                stdin=subprocess.DEVNULL,
            )  # fmt: skip
        self.flushers[name] = proc
        return proc

    def close(self) -> None:
        if self.web is not None:
            try:
                self.web.stop(timeout=20)
            except subprocess.TimeoutExpired:
                self.web.proc.kill()
                self.web.proc.wait(5)
        for proc in self.flushers.values():
            if proc.poll() is None:
                proc.send_signal(signal.SIGCONT)
                proc.kill()
                proc.wait(10)

    @property
    def url(self) -> str:
        assert self.web is not None
        return self.web.url

    # -- counters ----------------------------------------------------------------------

    def slot_of(self, name: str) -> int:
        bucket = keys.bucket_of(self.tenant, name, BUCKETS)
        return key_slot(keys.bucket_keys(bucket).values.encode())

    def owners(self, names: Sequence[str]) -> dict[str, int]:
        """Counter → index of the master serving it now."""
        topo = [n for n in self.cluster.topology() if n.role == "master"]
        found = {}
        for name in names:
            slot = self.slot_of(name)
            found[name] = next(n.index for n in topo if n.serves(slot))
        return found

    def fill_slots(self, names: Sequence[str], per_slot: int) -> int:
        """Add `per_slot` small filler keys to the slot of each counter's bucket, so that
        moving those slots takes long enough for requests to meet ASK and TRYAGAIN."""
        filled = 0
        for name in names:
            slot_key = keys.bucket_keys(keys.bucket_of(self.tenant, name, BUCKETS)).values
            tag = slot_key[slot_key.index("{") : slot_key.index("}") + 1]
            owner = self.cluster.owner_of_slot(self.slot_of(name))
            host, port = self.cluster.nodes[owner]
            r = Redis(host=host, port=port, socket_timeout=10)
            try:
                pipe = r.pipeline(transaction=False)
                for i in range(per_slot):
                    pipe.set(f"fill:{tag}:{i}", "x")
                pipe.execute()
                filled += per_slot
            finally:
                r.close()
        return filled

    def replica_values(self, replica: int, names: Sequence[str]) -> dict[str, int]:
        """What replica node `replica` holds for each counter (READONLY reads)."""
        host, port = self.cluster.nodes[replica]
        r = Redis(host=host, port=port, socket_timeout=5)
        try:
            r.readonly()  # reads from a replica, which redirects them otherwise
            found = {}
            for name in names:
                bucket = keys.bucket_of(self.tenant, name, BUCKETS)
                raw = r.hget(keys.bucket_keys(bucket).values, keys.member(self.tenant, name))
                found[name] = int(raw) if raw is not None else 0
            return found
        finally:
            r.close()

    def pg_values(self) -> dict[str, int]:
        with psycopg.connect(self.pg_dsn, autocommit=True, connect_timeout=10) as conn:
            rows = conn.execute(
                "SELECT namespace, value FROM counters WHERE tenant = %s", (self.tenant,)
            ).fetchall()
        return {str(ns): int(v) for ns, v in rows}

    def api_values(self, names: Sequence[str]) -> dict[str, int]:
        """GET of every counter (a failed read is left out, which the checker reports)."""
        found = {}
        for name in names:
            req = urllib.request.Request(
                f"{self.url}/v1/misc/counter/{name}", headers={"requiems-api-key": self.api_key}
            )
            for _ in range(5):
                try:
                    with urllib.request.urlopen(req, timeout=10) as resp:
                        found[name] = int(json.loads(resp.read())["data"]["value"])
                        break
                except (urllib.error.URLError, OSError, ValueError, KeyError):
                    time.sleep(0.5)
        return found

    def flush_everything(self, attempts: int = 10) -> None:
        """`counterctl flush --once` until it succeeds (the cluster may still be settling)."""
        last = ""
        for _ in range(attempts):
            try:
                counterctl(self.env, "flush", "--once", timeout=120)
                counterctl(self.env, "flush", "--once", timeout=120)  # repairs, then re-flushes
                return
            except (RuntimeError, subprocess.TimeoutExpired) as exc:
                last = str(exc)
                time.sleep(1.0)
        raise RuntimeError(f"final flush failed: {last}")

    def wait_flushed(self, acked: dict[str, int], timeout: float = 20.0) -> None:
        """Wait until PostgreSQL holds at least `acked[c]` for every counter."""
        deadline = time.monotonic() + timeout
        while True:
            pg = self.pg_values()
            behind = {c: (pg.get(c, 0), v) for c, v in acked.items() if pg.get(c, 0) < v}
            if not behind:
                return
            if time.monotonic() > deadline:
                raise TimeoutError(f"not flushed after {timeout:.0f}s: {list(behind.items())[:5]}")
            time.sleep(0.2)

    def advisory_locks_of(self, flusher: str) -> list[int]:
        """Partitions whose flush lock a flusher's session holds now."""
        with psycopg.connect(self.pg_dsn, autocommit=True, connect_timeout=5) as conn:
            rows = conn.execute(
                "SELECT l.objid FROM pg_locks l JOIN pg_stat_activity a ON a.pid = l.pid "
                "WHERE l.locktype = 'advisory' AND l.granted AND a.application_name = %s",
                (f"flusher-{flusher}",),
            ).fetchall()
        return [int(r[0]) for r in rows]
