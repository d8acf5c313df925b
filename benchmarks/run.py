"""``python -m benchmarks.run --profile quick|full``: the service against its ceiling, its
naive alternatives and a Go peer, in one run, on one machine; prints the ratios last.

A full run writes ``benchmarks/results/<UTC ts>.{json,md}`` (plots in ``<ts>/``) and
updates the tracked ``benchmarks/results/LATEST.md``; a quick run writes the same
files under the git-ignored ``benchmarks/.work/quick/`` and never touches
``LATEST.md``, so a first look cannot replace the report to quote.

Everything it starts (Redis Cluster, PostgreSQL, flusher, gunicorn servers, load
generators) is stopped on the way out, on error, Ctrl-C, SIGTERM or the
profile's deadline alike. It measures; it never fails on a number.
"""

from __future__ import annotations

import argparse
import os
import platform
import shutil
import signal
import subprocess
import sys
import time
from datetime import UTC, datetime
from pathlib import Path
from typing import Any, NoReturn

import psycopg

from benchmarks import batch_bench, go_peer, goals, measure_memory, plots, report
from benchmarks.profiles import PROFILES, Profile
from benchmarks.servers import APPS
from benchmarks.stack import backends
from benchmarks.sweep import Sweep

HERE = Path(__file__).resolve().parent
REPO = HERE.parent


class Interrupted(BaseException):
    """SIGTERM or the run's deadline: unwinds like Ctrl-C so every ``finally`` runs."""


def _interrupt(signum: int, frame: object) -> NoReturn:
    for sig in (signal.SIGTERM, signal.SIGINT, signal.SIGALRM):  # let the cleanup finish
        signal.signal(sig, signal.SIG_IGN)
    raise Interrupted(signal.Signals(signum).name)


def _machine() -> dict[str, Any]:
    model = next(
        (
            ln.split(":", 1)[1].strip()
            for ln in Path("/proc/cpuinfo").read_text().splitlines()
            if ln.startswith("model name")
        ),
        platform.processor(),
    )
    wrk = subprocess.run(["wrk", "-v"], capture_output=True, text=True, timeout=10)
    return {
        "cpus": os.cpu_count(),
        "cpu_model": model,
        "python": platform.python_version(),
        "wrk": (wrk.stdout or wrk.stderr).split("Copyright")[0].strip(),
        "loadavg_start": _loadavg(),
    }


def _loadavg() -> str:
    return " ".join(f"{x:.2f}" for x in os.getloadavg())


def _git() -> str:
    out = subprocess.run(
        ["git", "-C", str(REPO), "describe", "--always", "--dirty"],
        capture_output=True,
        text=True,
        timeout=10,
    )
    return out.stdout.strip() or "unknown"


def _print_ratios(results: dict[str, Any]) -> None:
    """The last lines on stdout: what CI shows. Ratios only; never a verdict on absolutes."""
    met = [g for g in results["goals"] if g["met"] is not None]
    print(
        f"goals met: {sum(g['met'] for g in met)}/{len(met)} measured "
        f"({len(results['goals']) - len(met)} not measured); report: {results['report']}"
    )
    print(
        f"ratios (POST increments over {results['profile']['namespaces']:,} namespaces, same run):"
    )
    batch = results.get("batch", {})
    if "batch_increments_per_s" in batch:
        print(
            f"  batch endpoint ({batch['batch_size']} per request): "
            f"{batch['batch_increments_per_s']:,} increments/s vs redis-py pipelined INCRBY "
            f"{batch['redis_py_pipelined_incrby_per_s']:,}/s: ratio {batch['ratio_to_baseline']}"
        )
    for key, r in results["ratios"].items():
        if not key.startswith(goals.PRODUCT + "/"):
            continue
        best = "n/a" if r["best"] is None else f"{r['best']:.2f}"
        equal = "n/a" if r["equal"] is None else f"{r['equal']:.2f}"
        sw, bw = r["best_workers"]
        print(
            f"  {key:<26} best {best:>5} ({sw} vs {bw} workers)   "
            f"equal {equal:>5} ({r['equal_workers']} workers)"
        )


def run(
    profile: Profile,
    outdir: Path,
    apps: list[str],
    keep_work: bool,
    flush_interval: float,
    profile_worker: bool = False,
) -> dict[str, Any]:
    ts = datetime.now(UTC).strftime("%Y%m%dT%H%M%SZ")
    workdir = HERE / ".work" / ts
    workdir.mkdir(parents=True)
    started = time.monotonic()
    results: dict[str, Any] = {
        "timestamp": ts,
        "profile": profile.__dict__ | {"workers": list(profile.workers)},
        "machine": _machine(),
        "git": _git(),
        "apps": [],
        "throughput": [],
        "latency": [],
        "notes": [],
    }
    peer = None
    if "go-peer" in apps:
        try:
            peer = go_peer.build()
        except go_peer.GoUnavailable as exc:
            print(f"bench: go-peer skipped: {exc}", file=sys.stderr, flush=True)
            results["notes"].append(f"The Go peer was not measured: {exc}.")
            apps = [a for a in apps if a != "go-peer"]
    ok = False
    try:
        with backends(workdir, flush_interval, peer) as b:
            results["notes"] += b.notes
            with psycopg.connect(b.pg_dsn, autocommit=True) as conn:
                row = conn.execute("SELECT value FROM meta WHERE key = 'buckets'").fetchone()
            results["buckets"] = int(row[0]) if row else 4096
            specs = [spec for spec in APPS if spec.name in apps]
            results["apps"] = [
                {"name": s.name, "label": s.label, "product": s.product} for s in specs
            ]
            sweep = Sweep(b, profile, results, workdir, outdir / ts, profile_worker)
            sweep.run(specs)
            sizes = [n for n in (profile.memory_counters, profile.scale_counters) if n]
            sweep.log(f"memory: creating {' and '.join(f'{n:,}' for n in sizes)} counters")
            try:
                results["memory"] = measure_memory.measure(
                    b.redis_nodes,
                    b.pg_dsn,
                    b.tenant,
                    profile.memory_counters,
                    b.flusher is not None,
                    flush_interval,
                    profile.scale_counters,
                    profile.scale_fill_s,
                    workdir,
                    profile.scale_sized_buckets,
                )
            except Exception as exc:  # a measurement, not a reason to lose the run
                results["memory"] = {"error": f"{type(exc).__name__}: {exc}"}
            sweep.log(f"memory: {results['memory']}")
            sweep.log("batch: 100 increments per request against redis-py pipelined INCRBY")
            try:
                results["batch"] = batch_bench.measure(
                    b, workdir, duration=max(profile.duration, 5)
                )
            except Exception as exc:  # a measurement, not a reason to lose the run
                results["batch"] = {"error": f"{type(exc).__name__}: {exc}"}
            sweep.log(f"batch: {results['batch']}")
        ok = True
    finally:
        results["elapsed_s"] = round(time.monotonic() - started, 1)
        results["machine"]["loadavg_end"] = _loadavg()
        if ok and not keep_work:
            shutil.rmtree(workdir, ignore_errors=True)
        elif not ok:
            print(f"bench: logs kept in {workdir}", file=sys.stderr)
    results.setdefault("flush_lag", {"skipped": "not run"})
    results["ratios"] = goals.ratios(results, profile.equal_workers)
    results["goals"] = goals.goals(results)
    plots.all_plots(results, outdir / ts)
    json_path, md_path = report.write(results, outdir, latest=profile.name == "full")
    results["report"] = (
        str(md_path.relative_to(REPO)) if md_path.is_relative_to(REPO) else str(md_path)
    )
    return results


def default_out(profile: str) -> Path:
    """Full runs report into the tracked results/; anything else into the git-ignored .work/."""
    return HERE / "results" if profile == "full" else HERE / ".work" / profile


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(prog="python -m benchmarks.run", description=__doc__)
    parser.add_argument("--profile", choices=sorted(PROFILES), default="quick")
    parser.add_argument(
        "--out",
        type=Path,
        default=None,
        help="report directory (default: benchmarks/results for full, benchmarks/.work/quick "
        "for quick); only a full run updates LATEST.md",
    )
    parser.add_argument(
        "--apps",
        default=",".join(a.name for a in APPS if a.default),
        help="comma-separated subset of: " + ", ".join(a.name for a in APPS),
    )
    parser.add_argument("--flush-interval", type=float, default=1.0, help="COUNTER_FLUSH_INTERVAL")
    parser.add_argument("--keep-work", action="store_true", help="keep logs in benchmarks/.work/")
    parser.add_argument(
        "--pyspy", action="store_true", help="also sample a service worker with py-spy under load"
    )
    args = parser.parse_args(argv)
    profile = PROFILES[args.profile]
    out = args.out or default_out(profile.name)
    unknown = set(args.apps.split(",")) - {a.name for a in APPS}
    if unknown:
        parser.error(f"unknown --apps {', '.join(sorted(unknown))}")
    for sig in (signal.SIGTERM, signal.SIGINT):  # SIGINT too: it may arrive ignored (nohup, &)
        signal.signal(sig, _interrupt)
    signal.signal(signal.SIGALRM, _interrupt)
    signal.alarm(profile.deadline_s)  # every run is bounded in time
    try:
        results = run(
            profile,
            out.resolve(),
            args.apps.split(","),
            args.keep_work,
            args.flush_interval,
            args.pyspy,
        )
    except (KeyboardInterrupt, Interrupted) as exc:
        print(
            f"bench: interrupted ({exc or 'Ctrl-C'}); everything started was stopped",
            file=sys.stderr,
        )
        return 130
    finally:
        signal.alarm(0)
    _print_ratios(results)
    return 0


if __name__ == "__main__":
    sys.exit(main())
