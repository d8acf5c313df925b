"""The checker fails end to end: ``loadtest/run.py`` (what CI runs) against a real server
with one deliberate bug must exit 1 and name the invariant that bug breaks, and only it.

Each server is ``broken_app`` under gunicorn (``broken_stores`` holds the store bugs),
and counts what it did wrong (``/stats``), so the checker's findings are compared with
the truth, not just with "something failed". Runs are a few seconds, bounded by
Locust's ``-t`` and by the harness's timeout. Where a bug also makes requests fail,
the error-ratio threshold is lifted (``LOADTEST_MAX_ERROR_RATIO=1``) so the run can
only fail through the invariant under test.
"""

from __future__ import annotations

import re
from pathlib import Path

from tests.loadtest import broken_stores, harness
from tests.loadtest.harness import Outcome

KEYS = {"LOADTEST_API_KEYS": "tenant-a,tenant-b"}
NO_ERROR_RATIO = {"LOADTEST_MAX_ERROR_RATIO": "1"}


def run(url: str, tmp: Path, scenario: str, users: int, **env: str) -> Outcome:
    return harness.driver(
        {**KEYS, "LOADTEST_HOST": url, "LOADTEST_SCENARIO": scenario,
         "LOADTEST_USERS": str(users), "LOADTEST_SPAWN_RATE": str(users),
         "LOADTEST_DURATION": "3s", **env},
        tmp,
    )  # fmt: skip


def failed_on(outcome: Outcome, kind: str) -> None:
    """Exit 1, ``kind`` and no other invariant in the JSON, and named in the output."""
    assert outcome.code == 1, outcome.output
    assert outcome.summary["passed"] is False, outcome.output
    assert set(outcome.summary["violation_kinds"]) == {kind}, outcome.output
    assert f"VIOLATION [{kind}]" in outcome.output and "RESULT: FAIL" in outcome.output


def test_read_then_write_returns_the_same_value_twice_and_fails_atomicity(tmp_path: Path) -> None:
    with harness.broken_server(tmp_path, "race") as url:
        outcome = run(url, tmp_path, "hot", 6)
    assert outcome.code == 1, outcome.output
    assert outcome.summary["violation_kinds"]["atomicity"] >= 1
    assert "returned more than once" in outcome.output


def test_lost_increments_with_distinct_values_fail_the_count_by_exactly_what_was_lost(
    tmp_path: Path,
) -> None:
    with harness.broken_server(tmp_path, "lost") as url:
        outcome = run(url, tmp_path, "hot", 4)
        lost = harness.server_stats(url)["lost"]
    failed_on(outcome, "count")  # every value was distinct: atomicity alone would miss it
    s = outcome.summary
    assert s["indeterminate"] == 0 and s["acked"] >= broken_stores.LOSE_EVERY, outcome.output
    final = re.search(r"acknowledged (\d+) = \d+; actual final (\d+)", outcome.output)
    assert final, outcome.output
    assert int(final[1]) == s["acked"] and int(final[1]) - int(final[2]) == lost
    assert lost == s["acked"] // broken_stores.LOSE_EVERY


def test_reads_from_a_lagging_replica_fail_the_read_check(tmp_path: Path) -> None:
    with harness.broken_server(tmp_path, "stale") as url:
        outcome = run(url, tmp_path, "race", 4, **NO_ERROR_RATIO)
        stale = harness.server_stats(url)["stale_reads"]
    failed_on(outcome, "reads")
    assert "below this user's acknowledged increment" in outcome.output
    assert 0 < outcome.summary["violation_kinds"]["reads"] <= stale


def body_run(tmp: Path, mode: str) -> tuple[Outcome, int]:
    """A run on ``mode``'s server: its outcome and how many wrong bodies the server sent."""
    with harness.broken_server(tmp, mode) as url:
        outcome = run(url, tmp, "race", 4, **NO_ERROR_RATIO)
        return outcome, harness.server_stats(url)["bad_bodies"]


def test_a_wrong_success_envelope_fails_the_body_check_once_per_bad_body(tmp_path: Path) -> None:
    outcome, bad = body_run(tmp_path, "envelope")
    failed_on(outcome, "protocol")
    assert outcome.summary["violation_kinds"]["protocol"] == bad > 0
    for why in ("no data {namespace, value}", "is not a whole number", "data.namespace"):
        assert why in outcome.output


def test_a_success_body_without_metadata_fails_the_body_check(tmp_path: Path) -> None:
    outcome, bad = body_run(tmp_path, "nometa")
    failed_on(outcome, "protocol")
    assert outcome.summary["violation_kinds"]["protocol"] == bad > 0
    assert "malformed body (no metadata.timestamp)" in outcome.output


def test_a_5xx_with_an_html_body_fails_the_body_check_and_a_json_503_does_not(
    tmp_path: Path,
) -> None:
    outcome, bad = body_run(tmp_path, "html5xx")
    failed_on(outcome, "protocol")
    s = outcome.summary
    # As many failed requests again were well-formed JSON 503s: not violations.
    assert s["violation_kinds"]["protocol"] == bad > 0
    assert s["stats"]["failures"] >= 2 * bad - 1, outcome.output
    assert "502 without the JSON error shape (Content-Type 'text/html'" in outcome.output
    assert s["indeterminate"] > 0  # the increments behind both 5xx are counted as unknown


def test_duplicates_only_the_merge_of_two_workers_tallies_shows_fail_the_distributed_run(
    tmp_path: Path,
) -> None:
    """Each connection gets its own perfect sequence 1, 2, 3...; one process never sees a
    repeat (the single-process control passes), two workers' merged values repeat."""
    with harness.broken_server(tmp_path, "sharded") as url:
        alone = run(url, tmp_path / "alone", "hot", 1)
        assert alone.code == 0 and harness.server_stats(url)["shards"] == 1, alone.output
        merged = run(url, tmp_path / "merged", "hot", 2, LOADTEST_WORKERS="2")
        shards = harness.server_stats(url)["shards"]
    failed_on(merged, "atomicity")
    s = merged.summary
    assert s["workers"] == "2 of 2 workers reported", merged.output
    # One connection (shard) per worker: each worker's own values were all distinct.
    assert shards == 1 + 2, merged.output
    assert "value(s) returned more than once: 1 x2, 2 x2" in merged.output
    assert " x3" not in merged.output
