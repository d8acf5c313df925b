"""Run one open-loop latency point (``openloop.py`` in a child process) against a server.

Besides the generator's JSON, it records how the generator's keep-alive connections
ended up spread over the gunicorn workers: for the baselines the kernel hands a new
connection to whichever worker wins the accept race, so a few workers may hold most of
them; the service steers each to a random worker (service/api/steering.py). Closed-loop
wrk hides that (a slow connection just sends less); at a fixed offered load, the worker
holding the most connections saturates first, which is what a client with long-lived
connections would see too.
"""

from __future__ import annotations

import json
import os
import subprocess
import sys
import time
from typing import Any

import psutil

from benchmarks.servers import Server


def connections_per_worker(s: Server) -> list[int]:
    """Established client connections held by each worker, most loaded first."""
    counts = []
    for pid in s.worker_pids():
        try:
            conns = psutil.Process(pid).net_connections("tcp")
        except psutil.Error:
            continue
        counts.append(sum(1 for c in conns if c.status == "ESTABLISHED" and c.laddr.port == s.port))
    return sorted(counts, reverse=True)


def run_point(
    s: Server, rate: float, duration: float, connections: int, namespaces: int, api_key: str
) -> dict[str, Any]:
    cmd = [
        sys.executable,
        "-m",
        "benchmarks.openloop",
        "--port",
        str(s.port),
        "--rate",
        str(rate),
        "--duration",
        str(duration),
        "--connections",
        str(connections),
        "--namespaces",
        str(namespaces),
    ]
    env = {**os.environ, "BENCH_API_KEY": api_key}
    with subprocess.Popen(
        cmd,
        env=env,
        stdout=subprocess.PIPE,
        stderr=subprocess.PIPE,
        stdin=subprocess.DEVNULL,
        start_new_session=True,
    ) as proc:
        try:
            time.sleep(min(1.0, duration / 2))  # connected and sending by then
            spread = connections_per_worker(s)
            out, err = proc.communicate(timeout=duration + 60)
        except BaseException:
            proc.kill()
            raise
    if proc.returncode != 0:
        raise RuntimeError(f"openloop failed: {err.decode(errors='replace')[-1500:]}")
    point: dict[str, Any] = json.loads(out.decode().strip().splitlines()[-1])
    point["connections_per_worker"] = spread
    return point
