"""Write one run's results: JSON (everything), Markdown (for people), LATEST.md (a copy)."""

from __future__ import annotations

import json
import shutil
from pathlib import Path
from typing import Any

from benchmarks.method import METHOD
from benchmarks.sections import Sections


def markdown(results: dict[str, Any], plot_dir: str) -> str:
    p, m, s = results["profile"], results["machine"], Sections(results)
    out = [
        f"# Benchmark report {results['timestamp']} (profile `{p['name']}`)",
        "",
        f"Machine: {m['cpus']} CPUs, {m['cpu_model']}; load average {m['loadavg_start']} at "
        f"start, {m['loadavg_end']} at end; Python {m['python']}; {m['wrk']}; commit "
        f"`{results['git']}`; the run took {results['elapsed_s']:.0f} s.",
        "",
        "> A shared, noisy 2-core machine: read the **ratios** (all measured in this run), not "
        "the absolute rates. The CPU column *other* shows what neighbours took during each point.",
        "",
        "## Goals",
        "",
        *s.goals(),
        f"## Ratios (POST increments over {p['namespaces']:,} namespaces, medians of the rounds)",
        "",
        *s.ratios(),
        "## Throughput (closed loop, wrk): the interleaved sweep",
        "",
        f"![throughput]({plot_dir}/throughput.png)",
        "",
        *s.sweep(),
        "Other workloads, each configuration at its best worker count:",
        "",
        *s.other_workloads(),
        "## Latency at fixed offered load (open loop)",
        "",
        f"![latency]({plot_dir}/latency.png)",
        "",
        *s.latency(),
        "## CPU split",
        "",
        f"![cpu]({plot_dir}/cpu.png)",
        "",
        "Per point in the tables above: cores busy during the measured window.",
        "",
        "## Flush lag at max load",
        "",
        *s.flush_lag(),
        "## Redis memory per counter",
        "",
        *s.memory(),
        "## Batch endpoint",
        "",
        *s.batch(),
    ]
    if results.get("pyspy"):
        out += ["## Hot path of a service worker (py-spy)", "", *s.pyspy()]
    if results["notes"]:
        out += ["## Notes", "", *(f"- {n}" for n in results["notes"]), ""]
    fmt = {"latency_rounds": 1, **p, "cpus": m["cpus"], "equal": p["equal_workers"]}
    fmt["workers"] = ", ".join(map(str, p["workers"]))
    out += ["## How this was measured", "", METHOD.format(**fmt)]
    out += ["Reproduce: `make bench` or `make bench-quick`; see `benchmarks/README.md`.", ""]
    return "\n".join(out)


def write(results: dict[str, Any], outdir: Path, latest: bool) -> tuple[Path, Path]:
    """``<ts>.json``, ``<ts>.md`` (plots in ``<ts>/``) and, when ``latest``, ``LATEST.md``, a copy
    of the latter (only full runs: the tracked LATEST.md is the report to quote)."""
    outdir.mkdir(parents=True, exist_ok=True)
    ts = results["timestamp"]
    json_path, md_path = outdir / f"{ts}.json", outdir / f"{ts}.md"
    json_path.write_text(json.dumps(results, indent=2) + "\n")
    md_path.write_text(markdown(results, ts))
    if latest:
        shutil.copyfile(md_path, outdir / "LATEST.md")  # same dir: the plot links still work
    return json_path, md_path
