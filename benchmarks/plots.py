"""PNG plots of one run (matplotlib, Agg backend: no display needed, CI-safe)."""

from __future__ import annotations

import textwrap
from pathlib import Path
from typing import Any

import matplotlib

matplotlib.use("Agg")
import matplotlib.pyplot as plt  # noqa: E402

from benchmarks.goals import MAIN, main_rps, median_rounds, sweep_summary  # noqa: E402

CPU_PARTS = ("server", "redis", "postgres", "flusher", "loadgen", "harness", "irq", "other")


def _short(label: str) -> str:
    return textwrap.fill(label.replace("\n", " "), 18)


def _labels(results: dict[str, Any]) -> dict[str, str]:
    return {
        a["name"]: a["label"] + ("" if a["product"] else "\n(baseline)") for a in results["apps"]
    }


def throughput(results: dict[str, Any], path: Path) -> None:
    labels, equal = _labels(results), results["profile"]["equal_workers"]
    apps = [a for a in labels if main_rps(results, a)[0]]
    fig, (left, right) = plt.subplots(1, 2, figsize=(13, 4.8))
    xs = range(len(apps))
    eq = [main_rps(results, a, equal)[0] for a in apps]
    best = [main_rps(results, a) for a in apps]
    left.bar([x - 0.2 for x in xs], eq, 0.4, label=f"{equal} workers (equal)")
    bars = left.bar([x + 0.2 for x in xs], [b[0] for b in best], 0.4, label="best worker count")
    for bar, (_, w) in zip(bars, best, strict=True):
        left.annotate(
            f"w={w}",
            (bar.get_x() + bar.get_width() / 2, bar.get_height()),
            ha="center",
            va="bottom",
            fontsize=8,
        )
    left.set_xticks(list(xs), [_short(labels[a]) for a in apps], fontsize=7)
    left.set_ylabel("successful requests/s")
    left.set_title(f"POST increment, {MAIN} (wrk -c{results['profile']['connections']})")
    left.legend(fontsize=8)
    summary = sweep_summary(results)
    for a in apps:
        rows = [r for r in summary if r["app"] == a]
        right.errorbar(
            [r["workers"] for r in rows],
            [r["ok_rps"] for r in rows],
            yerr=[[r["ok_rps"] - r["min"] for r in rows], [r["max"] - r["ok_rps"] for r in rows]],
            marker="o",
            capsize=3,
            label=labels[a].replace("\n", " "),
        )
    right.set_xticks(results["profile"]["workers"])
    right.set_xlabel("gunicorn workers")
    right.set_ylabel("successful requests/s")
    right.set_yscale("log")
    right.set_title("by worker count: median and range of the rounds")
    right.legend(fontsize=7, loc="upper center", bbox_to_anchor=(0.5, -0.14), ncol=3)
    fig.tight_layout()
    fig.savefig(path, dpi=110)
    plt.close(fig)


def latency(results: dict[str, Any], path: Path) -> None:
    labels = _labels(results)
    pcts = ("p50", "p99", "p99.9")
    fig, axes = plt.subplots(1, len(pcts), figsize=(14, 4.5), sharey=True)
    for ax, pct in zip(axes, pcts, strict=True):
        for app in labels:
            pts = sorted(
                (p for p in median_rounds(results["latency"]) if p["app"] == app),
                key=lambda p: p["fraction"],
            )
            if not pts:
                continue
            xs = [100 * p["fraction"] for p in pts]
            ys = [p["latency_ms"][pct] for p in pts]
            (line,) = ax.plot(xs, ys, marker="o", label=labels[app].replace("\n", " "))
            bad = [(x, y) for x, y, p in zip(xs, ys, pts, strict=True) if p["generator_bound"]]
            if bad:  # hollow rings: the generator, not only the server, set these
                ax.scatter(
                    *zip(*bad, strict=True), s=140, facecolors="none", edgecolors=line.get_color()
                )
        ax.axhline(10, color="grey", linestyle=":", linewidth=1)
        ax.set_yscale("log")
        ax.set_xlabel("offered load, % of that configuration's max")
        ax.set_title(f"{pct} latency, open loop")
    axes[0].set_ylabel("ms (log); dotted line = 10 ms; rings = generator-bound")
    axes[-1].legend(fontsize=7)
    fig.tight_layout()
    fig.savefig(path, dpi=110)
    plt.close(fig)


def cpu(results: dict[str, Any], path: Path) -> None:
    labels = _labels(results)
    rows = [  # each configuration's best sweep point, CPU averaged over the rounds
        {**r, "workload": MAIN}
        for r in sweep_summary(results)
        if r["workers"] == main_rps(results, r["app"])[1]
    ]
    rows += [
        {**p, "workload": f"open loop {int(p['fraction'] * 100)}%"}
        for p in median_rounds(results["latency"])
        if p["app"] == "service"
    ]
    fig, ax = plt.subplots(figsize=(13, 4.8))
    names = [f"{labels[r['app']]}\n{r['workload']}, w={r['workers']}" for r in rows]
    bottom = [0.0] * len(rows)
    for part in CPU_PARTS:
        vals = [r["cpu"].get(part, 0.0) for r in rows]
        ax.bar(range(len(rows)), vals, bottom=bottom, label=part)
        bottom = [b + v for b, v in zip(bottom, vals, strict=True)]
    ax.axhline(results["machine"]["cpus"], color="black", linestyle=":", linewidth=1)
    ax.set_xticks(range(len(rows)), names, fontsize=6)
    ax.set_ylabel("cores busy (dotted line = all cores)")
    ax.set_title("where the CPU went during each measured window")
    ax.legend(fontsize=7, loc="upper left", bbox_to_anchor=(1.0, 1.0))
    fig.tight_layout()
    fig.savefig(path, dpi=110)
    plt.close(fig)


def all_plots(results: dict[str, Any], outdir: Path) -> list[Path]:
    outdir.mkdir(parents=True, exist_ok=True)
    made = []
    for fn in (throughput, latency, cpu):
        path = outdir / f"{fn.__name__}.png"
        fn(results, path)
        made.append(path)
    return made
