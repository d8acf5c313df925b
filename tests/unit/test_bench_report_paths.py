"""Only a full benchmark run may replace the tracked report (benchmarks/results/LATEST.md)."""

from __future__ import annotations

import subprocess

from benchmarks.run import HERE, REPO, default_out


def test_full_runs_report_into_the_tracked_results() -> None:
    assert default_out("full") == HERE / "results"


def test_quick_runs_report_into_a_git_ignored_directory() -> None:
    out = default_out("quick")
    assert HERE / "results" not in (out, *out.parents)
    ignored = subprocess.run(
        ["git", "-C", str(REPO), "check-ignore", "-q", str(out / "LATEST.md")],
        capture_output=True,
        timeout=30,
    )
    assert ignored.returncode == 0, f"{out} is not git-ignored"
