"""CPU split: who burned the two cores during a measured window.

On a 2-core machine the load generator, the gunicorn workers, Redis and
PostgreSQL all compete, so a throughput number means little without knowing
where the CPU went. Long-lived processes are sampled with psutil before and
after the window; short-lived children (wrk, the open-loop generator) are
counted with ``RUSAGE_CHILDREN``, which covers them once they are reaped.
Interrupt time (``irq``: mostly loopback networking in softirq, which belongs to
no process) is shown apart; whatever else the machine spent beyond our
processes is ``other`` (other users of a shared box), so a noisy point can be
recognised.
"""

from __future__ import annotations

import os
import resource
import time
from collections.abc import Callable, Iterable

import psutil

PidSource = Callable[[], Iterable[int]]


def _tree(pid: int) -> list[int]:
    """pid and all its descendants (gunicorn workers, PostgreSQL backends)."""
    try:
        proc = psutil.Process(pid)
        return [pid, *(c.pid for c in proc.children(recursive=True))]
    except psutil.Error:
        return []


def tree(pid: int | None) -> PidSource:
    return lambda: _tree(pid) if pid else []


def pids(values: Iterable[int]) -> PidSource:
    fixed = list(values)
    return lambda: fixed


def _cpu_of(pid_list: Iterable[int]) -> dict[tuple[int, float], float]:
    """(pid, create_time) -> user+system seconds; a recycled pid is a different key."""
    out: dict[tuple[int, float], float] = {}
    for pid in pid_list:
        try:
            proc = psutil.Process(pid)
            times = proc.cpu_times()
            out[(pid, proc.create_time())] = times.user + times.system
        except psutil.Error:
            continue
    return out


def _machine() -> tuple[float, float]:
    """(busy, of which interrupts) in CPU seconds since boot, all cores."""
    t = psutil.cpu_times()
    irq = float(t.irq + t.softirq)
    return float(t.user + t.nice + t.system + getattr(t, "steal", 0.0)) + irq, irq


class CpuWindow:
    """``with CpuWindow(groups) as w: ...`` then ``w.result`` = cores used per group."""

    def __init__(self, groups: dict[str, PidSource]) -> None:
        self.groups = groups
        self.result: dict[str, float] = {}

    def __enter__(self) -> CpuWindow:
        self._before = {name: _cpu_of(src()) for name, src in self.groups.items()}
        self._children = resource.getrusage(resource.RUSAGE_CHILDREN)
        self._self = resource.getrusage(resource.RUSAGE_SELF)
        self._busy, self._irq = _machine()
        self._t0 = time.monotonic()
        return self

    def __exit__(self, *exc: object) -> None:
        wall = max(time.monotonic() - self._t0, 1e-6)
        res: dict[str, float] = {}
        for name, src in self.groups.items():
            after, before = _cpu_of(src()), self._before[name]
            # A process that appeared during the window counts from zero.
            res[name] = sum(v - before.get(k, 0.0) for k, v in after.items()) / wall
        ch = resource.getrusage(resource.RUSAGE_CHILDREN)
        me = resource.getrusage(resource.RUSAGE_SELF)
        res["loadgen"] = (
            ch.ru_utime - self._children.ru_utime + ch.ru_stime - self._children.ru_stime
        ) / wall
        res["harness"] = (
            me.ru_utime - self._self.ru_utime + me.ru_stime - self._self.ru_stime
        ) / wall
        busy, irq = _machine()
        busy, res["irq"] = (busy - self._busy) / wall, (irq - self._irq) / wall
        res["other"] = max(busy - sum(res.values()), 0.0)
        res["machine_busy"] = busy
        res["cores"] = float(os.cpu_count() or 1)
        self.result = {k: round(v, 3) for k, v in res.items()}
