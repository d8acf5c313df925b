"""The end-of-run summary: totals, each invariant's verdict, every violation."""

from __future__ import annotations

import json
from dataclasses import asdict, dataclass, field
from typing import Any

from .invariants import Violation
from .thresholds import LoadStats, Thresholds

SHOW_VIOLATIONS = 50


@dataclass
class Summary:
    run_id: str
    stats: LoadStats
    thresholds: Thresholds
    counters: int = 0
    attempted: int = 0
    acked: int = 0
    rejected: int = 0
    indeterminate: int = 0
    counters_indeterminate: int = 0
    values: int = 0
    reads: int = 0
    workers: str = "local"
    durability: str = "not checked"
    violations: list[Violation] = field(default_factory=list)
    inline_violations: list[str] = field(default_factory=list)  # seen by users during the run
    inline_violation_count: int = 0
    inline_kinds: dict[str, int] = field(default_factory=dict)  # every inline one, by kind

    @property
    def passed(self) -> bool:
        return not self.violations and self.inline_violation_count == 0

    def kinds(self) -> dict[str, int]:
        found = dict(self.inline_kinds)
        for v in self.violations:
            found[v.kind] = found.get(v.kind, 0) + 1
        return found

    def verdict(self, kind: str) -> str:
        n = self.kinds().get(kind, 0)
        return "OK" if n == 0 else f"FAILED ({n})"

    def to_json(self) -> str:
        data: dict[str, Any] = asdict(self)
        data["stats"]["error_ratio"] = self.stats.error_ratio
        data["passed"] = self.passed
        data["violation_kinds"] = self.kinds()
        data["violations"] = [str(v) for v in self.violations]
        return json.dumps(data, indent=2)

    def render(self) -> str:
        s, t = self.stats, self.thresholds
        lines = [
            f"==== counter invariants: run {self.run_id} ({self.workers}) ====",
            f"requests {s.requests}, failures {s.failures} (error ratio {s.error_ratio:.4f}, "
            f"max {t.max_error_ratio:g}), throughput {s.rps:.1f} req/s",
            f"latency ms: p50 {s.p50_ms:g}, p95 {s.p95_ms:g}, p99 {s.p99_ms:g} "
            f"(max {_off(t.max_p50_ms)} / {_off(t.max_p95_ms)} / {_off(t.max_p99_ms)})",
            f"increments: attempted {self.attempted}, acknowledged {self.acked}, "
            f"rejected {self.rejected}, indeterminate {self.indeterminate} "
            f"(on {self.counters_indeterminate} counters); reads {self.reads}; "
            f"{self.counters} counters touched",
            f"  atomicity (every acknowledged value distinct): {self.verdict('atomicity')}",
            f"  count (final == start + acknowledged, values in (start, final]): "
            f"{self.verdict('count')}",
            f"  reads (monotonic per user, <= start + attempted): {self.verdict('reads')}",
            f"  response bodies: {self.verdict('protocol')}",
            f"  durability (PostgreSQL == Redis): {self.durability}",
            f"  thresholds: {self.verdict('threshold')}",
        ]
        if self.kinds().get("completeness"):
            lines.append(f"  completeness: {self.verdict('completeness')}")
        shown = [str(v) for v in self.violations] + [
            f"VIOLATION {t}" for t in self.inline_violations
        ]
        lines += shown[:SHOW_VIOLATIONS]
        total = len(self.violations) + self.inline_violation_count
        if total > min(len(shown), SHOW_VIOLATIONS):
            lines.append(f"... {total - min(len(shown), SHOW_VIOLATIONS)} more violation(s)")
        lines.append(f"RESULT: {'PASS' if self.passed else f'FAIL ({total} violation(s))'}")
        return "\n".join(lines)


def _off(limit: float) -> str:
    return f"{limit:g}" if limit > 0 else "off"
