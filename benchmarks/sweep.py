"""Measure the configurations: an interleaved worker-count sweep, then each at its best count.

The machine is shared and noisy, so the sweep does not measure one configuration
after another: for each worker count it starts every configuration at once
(idle gunicorn servers cost nothing) and runs ``rounds`` rounds of one point
each, rotating the order, so every ratio compares points taken seconds apart;
the median of the rounds is kept. Then, per configuration at its best worker
count: the other workloads, the open-loop latency points (fractions of that
best rate) and, for the service, the flush lag (and py-spy when asked).
Every point has its own CPU window.
"""

from __future__ import annotations

import sys
from pathlib import Path
from typing import Any

from benchmarks import cpu, latency, pyspy
from benchmarks.flush_lag import FlushLag
from benchmarks.goals import MAIN, main_rps
from benchmarks.profiles import Profile
from benchmarks.servers import AppSpec, Server, start_all, stop_all
from benchmarks.stack import Backends
from benchmarks.wrk import run_wrk


class Sweep:
    def __init__(
        self,
        b: Backends,
        profile: Profile,
        results: dict[str, Any],
        workdir: Path,
        artifacts: Path,
        profile_worker: bool = False,
    ) -> None:
        self.b, self.p, self.results, self.workdir = b, profile, results, workdir
        self.artifacts, self.profile_worker = artifacts, profile_worker

    def log(self, msg: str) -> None:
        print(f"bench: {msg}", file=sys.stderr, flush=True)

    def groups(self, server: Server) -> dict[str, cpu.PidSource]:
        g = {
            "server": cpu.tree(server.pid),
            "redis": cpu.pids(self.b.redis_pids),
            "postgres": cpu.tree(self.b.pg_pid),
        }
        if self.b.flusher is not None:
            g["flusher"] = cpu.tree(self.b.flusher.pid)
        return g

    def load(self, s: Server, workload: str, duration: int) -> Any:
        return run_wrk(
            s.url,
            workload,
            duration=duration,
            threads=self.p.threads,
            connections=self.p.connections,
            api_key=self.b.api_key,
            namespaces=self.p.namespaces,
        )

    def wrk(self, s: Server, workload: str, duration: int, phase: str, **extra: Any) -> None:
        with cpu.CpuWindow(self.groups(s)) as w:
            r = self.load(s, workload, duration)
        r.cpu = w.result
        row = {"app": s.spec.name, "workers": s.workers, "phase": phase, **extra, **r.as_dict()}
        self.results["throughput"].append(row)
        self.log(
            f"{s.spec.name:<16} w={s.workers} {workload:<12} {r.ok_rps:>9,.0f} ok req/s "
            f"(non-2xx {r.errors['status']}, other {w.result['other']:.2f} cores)"
        )

    def server(self, spec: AppSpec, workers: int) -> Server:
        return Server(spec, workers, self.b.service_env(), self.workdir)

    def run(self, specs: list[AppSpec]) -> None:
        running = self.sweep(specs)
        try:
            for spec in specs:
                self.at_best(spec, running.pop(spec.name))
        finally:
            stop_all(list(running.values()))

    def sweep(self, specs: list[AppSpec]) -> dict[str, Server]:
        """Interleaved rounds at each worker count; leaves the last count's servers running."""
        servers: list[Server] = []
        for workers in self.p.workers:
            stop_all(servers)
            servers = start_all([self.server(spec, workers) for spec in specs])
            try:
                for s in servers:
                    self.load(s, MAIN, self.p.warmup)  # warm-up: connections, caches, hydration
                for rnd in range(self.p.rounds):
                    k = rnd % len(servers)
                    for s in servers[k:] + servers[:k]:
                        self.wrk(s, MAIN, self.p.duration, "sweep", round=rnd)
            except BaseException:
                stop_all(servers)
                raise
        return {s.spec.name: s for s in servers}

    def at_best(self, spec: AppSpec, running: Server) -> None:
        max_rps, best = main_rps(self.results, spec.name)
        if running.workers == best:
            s = running
        else:
            running.stop()
            s = self.server(spec, best).__enter__()
        try:
            if s is not running:
                self.load(s, MAIN, self.p.warmup)
            for workload in spec.workloads:
                if workload != MAIN and (self.p.all_workloads or spec.product):
                    self.wrk(s, workload, self.p.duration, "best")
            for rnd in range(self.p.latency_rounds):  # a round is every offered load once
                for fraction in self.p.latency_fractions:
                    self.openloop(s, fraction, max_rps, rnd)
            if spec.name == "service":
                self.flush_lag(s)
                if self.profile_worker:
                    self.pyspy(s)
        finally:
            s.stop()

    def openloop(self, s: Server, fraction: float, max_rps: float, rnd: int = 0) -> None:
        rate = max(1.0, round(fraction * max_rps))
        with cpu.CpuWindow(self.groups(s)) as w:
            point = latency.run_point(
                s,
                rate,
                self.p.latency_duration,
                self.p.connections,
                self.p.namespaces,
                self.b.api_key,
            )
        point = {
            "app": s.spec.name,
            "workers": s.workers,
            "fraction": fraction,
            "round": rnd,
            **point,
            "cpu": w.result,
        }
        self.results["latency"].append(point)
        lat, flag = point["latency_ms"], " (generator-bound)" if point["generator_bound"] else ""
        self.log(
            f"{s.spec.name:<16} w={s.workers} open loop {fraction:.0%} = {rate:,.0f} req/s: "
            f"p50 {lat['p50']} p99 {lat['p99']} ms{flag}; "
            f"connections per worker {point['connections_per_worker']}"
        )

    def flush_lag(self, s: Server) -> None:
        f = self.b.flusher
        if f is None or f.poll() is not None:
            why = (
                "counter-flusher is not installed"
                if f is None
                else f"flusher exited ({f.returncode})"
            )
            self.results["flush_lag"] = {"skipped": why}
            return
        with FlushLag(
            s.port, self.b.api_key, self.b.pg_dsn, self.b.tenant, self.results["buckets"]
        ) as lag:
            self.wrk(s, MAIN, self.p.flush_lag_duration, "flush-lag")
        self.results["flush_lag"] = lag.result(self.b.flush_interval)
        self.log(f"flush lag: {self.results['flush_lag']['lag_s']}")

    def pyspy(self, s: Server) -> None:
        """Sample one worker (wall and GIL) while wrk loads the server; that wrk run is not kept."""
        self.artifacts.mkdir(parents=True, exist_ok=True)
        pid, secs = s.worker_pids()[0], self.p.duration
        outs = {m: self.artifacts / f"pyspy-service-worker-{m}.txt" for m in ("wall", "gil")}
        jobs = {m: pyspy.start(pid, secs, out, m == "gil") for m, out in outs.items()}
        try:
            self.load(s, MAIN, secs + 1)
        finally:
            found = {m: pyspy.finish(jobs[m], outs[m], secs + 30) for m in outs}
        for data in found.values():
            if "raw" in data:  # relative to the report, like the plots
                data["raw"] = f"{self.artifacts.name}/{data['raw']}"
        self.results["pyspy"] = {"pid": pid, **found}
        self.log(f"py-spy: top CPU (GIL) self time {found['gil'].get('self', [])[:3]}")
