"""Closed-loop maximum throughput with wrk (C, epoll): the cheapest load generator here.

wrk keeps ``-c`` connections busy back to back, so its rate is the server's
maximum at that concurrency; its latencies are closed-loop (they hide queueing,
see openloop.py for latency at a fixed offered load). The Lua scripts in
``lua/`` build requests once per thread and print one ``BENCH_JSON`` line.
"""

from __future__ import annotations

import json
import os
import shutil
import subprocess
from dataclasses import asdict, dataclass, field
from pathlib import Path
from typing import Any

LUA_DIR = Path(__file__).resolve().parent / "lua"
WORKLOADS = {  # name -> (lua script, HTTP method)
    "post-spread": ("spread.lua", "POST"),
    "post-hot": ("hot.lua", "POST"),
    "get-spread": ("spread.lua", "GET"),
    "post-flood": ("flood.lua", "POST"),  # a distinct made-up key per request (auth_bench)
    "post-batch": ("batch.lua", "POST"),  # BENCH_BATCH items per request (batch_bench.py)
}


class WrkError(RuntimeError):
    """wrk failed or printed no result line."""


@dataclass
class WrkResult:
    workload: str
    requests: int
    duration_s: float
    rps: float  # all responses per second
    ok_rps: float  # responses per second that were 2xx without socket error
    errors: dict[str, int]
    latency_ms: dict[str, float]  # closed-loop, for information only
    cpu: dict[str, float] = field(default_factory=dict)

    def as_dict(self) -> dict[str, Any]:
        return asdict(self)


def wrk_binary() -> str:
    path = shutil.which("wrk")
    if path is None:
        raise WrkError("wrk not found (apt-get install wrk)")
    return path


def run_wrk(
    url: str,
    workload: str,
    *,
    duration: int,
    threads: int,
    connections: int,
    api_key: str = "",
    namespaces: int = 1000,
) -> WrkResult:
    """Run one wrk point against ``url`` (scheme://host:port) and parse its JSON line."""
    script, method = WORKLOADS[workload]
    env = {
        **os.environ,
        "BENCH_LUA_DIR": str(LUA_DIR),
        "BENCH_API_KEY": api_key,
        "BENCH_METHOD": method,
        "BENCH_NAMESPACES": str(namespaces),
    }
    cmd = [
        wrk_binary(),
        f"-t{threads}",
        f"-c{connections}",
        f"-d{duration}s",
        "--timeout",
        "5s",
        "-s",
        str(LUA_DIR / script),
        url,
    ]
    out = subprocess.run(
        cmd,
        env=env,
        capture_output=True,
        text=True,
        timeout=duration + 30,
        stdin=subprocess.DEVNULL,
        start_new_session=True,
    )
    line = next((ln for ln in out.stdout.splitlines() if ln.startswith("BENCH_JSON ")), None)
    if out.returncode != 0 or line is None:
        raise WrkError(f"wrk exited {out.returncode}: {out.stdout[-800:]}{out.stderr[-800:]}")
    raw = json.loads(line.removeprefix("BENCH_JSON "))
    seconds = raw["duration_us"] / 1e6
    errors: dict[str, int] = raw["errors"]
    # wrk counts non-2xx/3xx responses in errors.status; timeouts and socket errors
    # are requests that never completed, so they are not in "requests" at all.
    ok = raw["requests"] - errors["status"]
    return WrkResult(
        workload=workload,
        requests=raw["requests"],
        duration_s=round(seconds, 3),
        rps=round(raw["requests"] / seconds, 1),
        ok_rps=round(max(ok, 0) / seconds, 1),
        errors=errors,
        latency_ms={k: round(v / 1000, 3) for k, v in raw["latency_us"].items()},
    )
