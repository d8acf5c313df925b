"""Ratios and goals, computed only from numbers measured in the same run.

Absolute numbers depend on the machine and its neighbours; ratios between
configurations measured minutes apart on the same machine are what the issue
sets goals on, and what CI prints (it never fails on them).
"""

from __future__ import annotations

from collections import defaultdict
from statistics import mean, median
from typing import Any

PRODUCT = "service"  # the deployed default (meinheld); gthread is reported beside it
MAIN = "post-spread"  # increments over 1,000 namespaces: the workload the ratios use
BASELINES = {
    "ceiling": "ceiling",
    "naive-incr": "naive-INCR",
    "go-peer": "go-peer",
    "naive-pg": "naive-PostgreSQL",
}


def sweep_summary(results: dict[str, Any]) -> list[dict[str, Any]]:
    """One row per (configuration, workers) of the sweep: median, min and max over the rounds,
    and the CPU split averaged over the rounds."""
    groups: dict[tuple[str, int], list[dict[str, Any]]] = defaultdict(list)
    for r in results["throughput"]:
        if r["workload"] == MAIN and r.get("phase") == "sweep":
            groups[(r["app"], r["workers"])].append(r)
    out = []
    for (app, workers), rows in groups.items():
        rps = [r["ok_rps"] for r in rows]
        parts = {k for r in rows for k in r["cpu"]}
        cpu = {k: round(mean(r["cpu"].get(k, 0.0) for r in rows), 3) for k in parts}
        out.append(
            {
                "app": app,
                "workers": workers,
                "ok_rps": median(rps),
                "min": min(rps),
                "max": max(rps),
                "rounds": len(rps),
                "non2xx": sum(r["errors"]["status"] for r in rows),
                "cpu": cpu,
            }
        )
    order = [a["name"] for a in results["apps"]]  # the product first, as in APPS
    return sorted(out, key=lambda r: (order.index(r["app"]), r["workers"]))


def main_rps(results: dict[str, Any], app: str, workers: int | None = None) -> tuple[float, int]:
    """(median ok rps, workers) of ``app`` on the main workload: at ``workers``, or its best."""
    rows = [r for r in sweep_summary(results) if r["app"] == app]
    if workers is not None:
        rows = [r for r in rows if r["workers"] == workers]
    if not rows:
        return 0.0, 0
    best = max(rows, key=lambda r: r["ok_rps"])
    return float(best["ok_rps"]), int(best["workers"])


def ratios(results: dict[str, Any], equal: int) -> dict[str, dict[str, Any]]:
    out: dict[str, dict[str, Any]] = {}
    measured = {a["name"] for a in results["apps"]}
    for app in (a for a in (PRODUCT, "service-gthread", "service-redispy") if a in measured):
        svc_best, svc_w = main_rps(results, app)
        svc_eq, _ = main_rps(results, app, equal)
        for base, name in BASELINES.items():
            b_best, b_w = main_rps(results, base)
            b_eq, _ = main_rps(results, base, equal)
            out[f"{app}/{name}"] = {
                "best": round(svc_best / b_best, 3) if b_best else None,
                "best_workers": [svc_w, b_w],
                "equal": round(svc_eq / b_eq, 3) if b_eq else None,
                "equal_workers": equal,
            }
    return out


def _goal(
    name: str, measured: float | None, target: float, le: bool, note: str = ""
) -> dict[str, Any]:
    met = None if measured is None else (measured <= target if le else measured >= target)
    return {
        "goal": name,
        "measured": measured,
        "target": target,
        "op": "<=" if le else ">=",
        "met": met,
        "note": note,
    }


def goals(results: dict[str, Any]) -> list[dict[str, Any]]:
    r = results["ratios"]
    out = [
        _goal(
            "increment throughput vs naive redis-py INCR (each at best workers)",
            r.get(f"{PRODUCT}/naive-INCR", {}).get("best"),
            1.5,
            le=False,
        ),
        _goal(
            "increment throughput vs HTTP ceiling (each at best workers)",
            r.get(f"{PRODUCT}/ceiling", {}).get("best"),
            0.45,
            le=False,
        ),
        _goal(
            "service / Go peer (POST over 1,000 namespaces, each at its best)",
            r.get(f"{PRODUCT}/go-peer", {}).get("best"),
            0.60,
            le=False,
        ),
    ]
    half = [p for p in results["latency"] if p["app"] == PRODUCT and p["fraction"] == 0.5]
    p99 = half[0]["latency_ms"]["p99"] if half else None
    note = ""
    if half and half[0].get("saturated"):
        note = "saturated: the server fell behind the offered rate during this point"
    if half and half[0]["generator_bound"]:
        note = "generator-bound point: not trusted"
    out.append(_goal("p99 latency (ms) at 50% of max rate, open loop", p99, 10.0, True, note))
    lag = results.get("flush_lag", {})
    interval = lag.get("flush_interval_s", 1.0)
    out.append(
        _goal(
            f"flush lag p99 (s) at max load, <= 2 x interval ({interval:g} s)",
            (lag.get("lag_s") or {}).get("p99"),
            2 * interval,
            True,
            lag.get("skipped", ""),
        )
    )
    mem = results.get("memory", {})
    per = mem.get("bytes_per_counter_flushed", mem.get("bytes_per_counter_dirty"))
    mnote = "" if "bytes_per_counter_flushed" in mem else "with dirty marks (no flusher ran)"
    out.append(_goal("Redis memory (bytes) per counter", per, 100.0, True, mem.get("error", mnote)))
    return out
