"""The fault report: one Markdown table row per scenario, then what failed and why.

Written by `make faults` to benchmarks/results/faults-<UTC timestamp>.md and
FAULTS.md (tests/faults/conftest.py calls `write`); rendering is pure.
"""

from __future__ import annotations

from collections.abc import Mapping, Sequence
from pathlib import Path

from tests.faults.history import Verdict

HEADER = (
    "| scenario | requests | acknowledged | errors by class | acknowledged lost: observed / bound "
    "| counted twice | values acknowledged twice | recovery | verdict |\n"
    "|---|---|---|---|---|---|---|---|---|\n"
)


def _errors(v: Verdict) -> str:
    return ", ".join(f"{kind}: {n}" for kind, n in v.errors.items()) or "none"


def _recovery(v: Verdict) -> str:
    return "never" if v.recovery_s is None else f"{v.recovery_s:.1f} s"


def _verdict(v: Verdict, expected_failure: bool) -> str:
    if v.passed:
        return "pass"
    return "FAIL (expected today: issue 12)" if expected_failure else "FAIL"


def render(
    verdicts: Sequence[Verdict],
    meta: Mapping[str, str],
    expected_failures: frozenset[str] = frozenset(),
) -> str:
    lines = [
        f"# Fault report {meta.get('started', '')}\n\n",
        "Each scenario runs several HTTP clients incrementing counters continuously against "
        "the real service (gunicorn + meinheld, `counter-flusher`) on a Redis Cluster with a "
        "replica per master and a throwaway PostgreSQL, injects its fault, and checks every "
        "counter's history against PostgreSQL (after a final flush) and the API. *Lost* = "
        "acknowledged increments missing from the final count; *counted twice* = a count above "
        "acknowledged + unknown outcomes. Made by `make faults` "
        f"({meta.get('mode', 'full')} mode: {meta.get('load', '')}).\n\n",
        HEADER,
    ]
    verdicts = sorted(verdicts, key=lambda v: v.scenario)  # a, b, … whatever ran first
    for v in verdicts:
        lines.append(
            f"| {v.scenario} | {v.requests} | {v.acknowledged} | {_errors(v)} "
            f"| {v.lost} / {v.bound} | {v.counted_twice} | {v.duplicate_values} "
            f"| {_recovery(v)} | {_verdict(v, v.scenario in expected_failures)} |\n"
        )
    details = [v for v in verdicts if v.problems or v.notes or v.bound_note]
    if details:
        lines.append("\n## Details\n")
    for v in details:
        lines.append(f"\n### {v.scenario}\n\n")
        if v.bound_note:
            lines.append(f"- bound: {v.bound_note}\n")
        lines += [f"- {note}\n" for note in v.notes]
        lines += [f"- **problem:** {problem}\n" for problem in v.problems]
    for key in ("machine", "commit"):
        if meta.get(key):
            lines.append(f"\n{key}: {meta[key]}\n")
    return "".join(lines)


def write(text: str, results: Path, stamp: str) -> list[Path]:
    """Write faults-<stamp>.md and its copy FAULTS.md under `results`; the paths."""
    results.mkdir(parents=True, exist_ok=True)
    paths = [results / f"faults-{stamp}.md", results / "FAULTS.md"]
    for path in paths:
        path.write_text(text)
    return paths
