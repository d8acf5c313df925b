"""Ratios and goals, computed only from numbers measured in the same run.

Absolute numbers depend on the machine and its neighbours; ratios between
configurations measured minutes apart on the same machine are what the issue
sets goals on, and what CI prints (it never fails on them).

A goal reads "not measured" (``met`` is None, the reason in ``note``) rather
than met or not met when the point behind it is flagged (saturated,
generator-bound) or any of its requests failed or was never seen: such a
number describes a server that was not keeping up, or only the requests that
survived.
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
                "socket_errors": sum(
                    r["errors"][k] for r in rows for k in ("connect", "read", "write", "timeout")
                ),
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


def _failed(results: dict[str, Any], app: str, workers: int) -> int:
    """Non-2xx responses and socket errors over the sweep rounds of ``app`` at ``workers``."""
    return sum(
        r["non2xx"] + r["socket_errors"]
        for r in sweep_summary(results)
        if r["app"] == app and r["workers"] == workers
    )


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
                "best_failed": _failed(results, app, svc_w) + _failed(results, base, b_w),
                "equal": round(svc_eq / b_eq, 3) if b_eq else None,
                "equal_workers": equal,
            }
    return out


def _goal(
    name: str,
    measured: float | None,
    target: float,
    le: bool,
    untrusted: str = "",
    note: str = "",
) -> dict[str, Any]:
    """``untrusted`` names what makes the number unfit to judge: then the goal is not measured.
    ``note`` only informs."""
    met = None
    if measured is not None and not untrusted:
        met = measured <= target if le else measured >= target
    return {
        "goal": name,
        "measured": measured,
        "target": target,
        "op": "<=" if le else ">=",
        "met": met,
        "note": untrusted or note,
    }


def _ratio_goal(results: dict[str, Any], name: str, key: str, target: float) -> dict[str, Any]:
    r = results["ratios"].get(key, {})
    failed = r.get("best_failed", 0)
    why = f"{failed:,} requests failed (non-2xx or socket errors)" if failed else ""
    return _goal(name, r.get("best"), target, False, why)


def latency_flags(point: dict[str, Any]) -> str:
    """Why an open-loop point cannot judge a latency goal, or "" when it can."""
    why = []
    if point.get("generator_bound"):
        why.append("generator-bound")
    if point.get("saturated"):
        why.append("saturated: the server fell behind the offered rate")
    bad = point.get("non2xx", 0) + point.get("lost", point.get("failed", 0))
    if bad:
        why.append(f"{bad:,} requests failed or got no response")
    return "; ".join(why)


def median_rounds(points: list[dict[str, Any]]) -> list[dict[str, Any]]:
    """One open-loop point per configuration, worker count and offered load: of its
    rounds, the one with the median p99 (the higher of the two middle ones for an even
    count; a round without a p99, too many requests lost, ranks highest), with every
    round's p99 in the order run as ``p99_rounds``. Why: one window's p99 is at the
    mercy of a shared machine's neighbours; the throughput sweep keeps medians too."""
    groups: dict[tuple[Any, ...], list[dict[str, Any]]] = {}
    for p in points:
        groups.setdefault((p["app"], p.get("workers"), p["fraction"]), []).append(p)
    out = []
    for rounds in groups.values():
        ranked = sorted(rounds, key=_p99_rank)
        out.append({**ranked[len(ranked) // 2], "p99_rounds": [_p99(p) for p in rounds]})
    return out


def _p99(point: dict[str, Any]) -> float | None:
    p99: float | None = point["latency_ms"]["p99"]
    return p99


def _p99_rank(point: dict[str, Any]) -> float:
    p99 = _p99(point)
    return float("inf") if p99 is None else p99


def flush_lag_flags(lag: dict[str, Any]) -> str:
    """Why a flush-lag measurement cannot judge its goal, or "" when it can."""
    if "skipped" in lag:
        return str(lag["skipped"])
    why = []
    if lag.get("never_seen"):
        why.append(f"{lag['never_seen']:,} acknowledged increments never seen in PostgreSQL")
    if lag.get("send_errors"):
        why.append(f"{lag['send_errors']:,} sampler requests failed")
    return "; ".join(why)


def goals(results: dict[str, Any]) -> list[dict[str, Any]]:
    out = [
        _ratio_goal(
            results,
            "increment throughput vs naive redis-py INCR (each at best workers)",
            f"{PRODUCT}/naive-INCR",
            2.4,  # issue 16: no regression from the 2.40 measured before the Go peer work
        ),
        _ratio_goal(
            results,
            "increment throughput vs HTTP ceiling (each at best workers)",
            f"{PRODUCT}/ceiling",
            0.45,
        ),
        _ratio_goal(
            results,
            "service / Go peer (POST over 1,000 namespaces, each at its best)",
            f"{PRODUCT}/go-peer",
            0.60,
        ),
    ]
    points = median_rounds(results["latency"])
    half = [p for p in points if p["app"] == PRODUCT and p["fraction"] == 0.5]
    p99 = half[0]["latency_ms"]["p99"] if half else None
    why = latency_flags(half[0]) if half else ""
    out.append(_goal("p99 latency (ms) at 50% of max rate, open loop", p99, 5.0, True, why))
    lag = results.get("flush_lag", {})
    interval = lag.get("flush_interval_s", 1.0)
    out.append(
        _goal(
            f"flush lag p99 (s) at max load, <= 2 x interval ({interval:g} s)",
            (lag.get("lag_s") or {}).get("p99"),
            2 * interval,
            True,
            flush_lag_flags(lag),
        )
    )
    mem = results.get("memory", {})
    per = mem.get("bytes_per_counter_flushed", mem.get("bytes_per_counter_dirty"))
    mnote = "" if "bytes_per_counter_flushed" in mem else "with dirty marks (no flusher ran)"
    out.append(
        _goal(
            f"Redis memory (bytes) per counter at {mem.get('counters', 100_000):,} counters",
            per,
            100.0,
            True,
            mem.get("error", ""),
            mnote,
        )
    )
    p = "scale_sized_" if "scale_sized_counters" in mem else "scale_"
    partial = "" if mem.get(p + "complete", True) else "partial fill: the deadline stopped it"
    default = mem.get("scale_bytes_per_counter_flushed")
    sized = f", {mem['scale_sized_buckets']:,} buckets" if p == "scale_sized_" else ""
    out.append(
        _goal(
            "Redis memory (bytes) per counter at "
            f"{mem.get('scale_target_counters', 10_000_000):,} counters{sized}, after flush",
            mem.get(p + "bytes_per_counter_flushed"),
            40.0,
            True,
            mem.get("error", partial),
            f"{default} with the default {mem.get('buckets', 0):,} buckets"
            if sized and default is not None
            else ("" if "scale_counters" in mem else "full profile only"),
        )
    )
    out.append(batch_goal(results.get("batch", {})))
    return out


BATCH_TARGET = 250_000  # issue 15: increments/s through the batch endpoint, every one flushed


def batch_goal(batch: dict[str, Any]) -> dict[str, Any]:
    """Not measured when a request failed; not met, whatever the rate, when PostgreSQL
    holds fewer increments than were acknowledged (one was lost)."""
    name = f"batch endpoint increments/s ({batch.get('batch_size', 100)} per request), all flushed"
    rate = batch.get("batch_increments_per_s")
    if rate is None:
        return _goal(name, None, BATCH_TARGET, False, batch.get("error", "not run"))
    failed = sum((batch.get("errors") or {}).values())
    why = f"{failed:,} requests failed (non-2xx or socket errors)" if failed else ""
    acked, flushed = batch.get("acknowledged_increments"), batch.get("flushed_to_postgresql")
    note = f"{batch.get('ratio_to_baseline')} x redis-py pipelined INCRBY"
    if flushed is None:
        why = why or "no flusher ran: nothing to check in PostgreSQL"
    else:
        note += f"; {flushed:,} flushed for {acked:,} acknowledged"
    goal = _goal(name, rate, BATCH_TARGET, False, why, note)
    if flushed is not None and acked is not None and flushed < acked and not failed:
        goal["met"] = False
        goal["note"] = f"increments lost: {flushed:,} flushed for {acked:,} acknowledged"
    return goal
