"""The load-test checker's pure logic: invariants, merged tallies, bodies, thresholds.

End to end, through ``loadtest/run.py``: ``test_broken_servers.py`` (a server with one
bug per run must fail it, naming the right invariant) and ``test_real_service.py``
(the real service must pass; without a flusher PostgreSQL must differ from Redis).
"""

from __future__ import annotations

from typing import Any

import pytest

from loadtest.counterload.bodies import error_problem, success_problem
from loadtest.counterload.invariants import bounds, check_counter, compare_durable
from loadtest.counterload.report import Summary
from loadtest.counterload.tally import MAX_RECORDED_VIOLATIONS, CounterTally, Tally
from loadtest.counterload.thresholds import LoadStats, Thresholds, check_thresholds
from loadtest.counterload.zipf import Zipf
from loadtest.run import seconds

JSON = "application/json"
META = ', "metadata": {"timestamp": "2026-01-01T00:00:00Z"}'


def tally(attempted: int, values: list[int], rejected: int = 0, max_read: int = -1) -> CounterTally:
    return CounterTally(attempted=attempted, acked=len(values), rejected=rejected,
                        max_read=max_read, values=values)  # fmt: skip


def kinds(violations: list[Any]) -> list[str]:
    return [v.kind for v in violations]


# -- (a) the pure invariant logic ------------------------------------------------------------


def test_distinct_values_and_final_equal_to_start_plus_acknowledged_pass() -> None:
    assert check_counter("c", 10, 13, tally(3, [12, 11, 13])) == []


def test_a_value_returned_twice_is_an_atomicity_violation() -> None:
    found = check_counter("0/hot", 0, 3, tally(4, [1, 2, 2, 3]))
    assert "atomicity" in kinds(found)
    assert "2 x2" in str(found[0]) and "0/hot" in str(found[0])


def test_final_below_start_plus_acknowledged_is_a_lost_increment() -> None:
    found = check_counter("c", 5, 7, tally(3, [6, 7, 8]))
    assert any("final == start 5 + acknowledged 3 = 8" in str(v) and "final 7" in str(v)
               for v in found)  # fmt: skip
    assert set(kinds(found)) == {"count"}  # distinct values: not an atomicity violation


def test_final_above_start_plus_attempted_is_a_phantom_increment() -> None:
    found = check_counter("c", 0, 4, tally(3, [1, 2, 3]))
    assert kinds(found) == ["count"]
    assert "expected final == start 0 + acknowledged 3 = 3; actual final 4" in str(found[0])


def test_indeterminate_outcomes_widen_the_range_and_are_counted() -> None:
    t = tally(5, [1, 2, 3])  # 2 attempts ended in 503 / timeout: unknown
    assert t.indeterminate == 2
    assert bounds(0, t) == (3, 5)
    for final in (3, 4, 5):
        assert check_counter("c", 0, final, t) == []
    for final in (2, 6):
        found = check_counter("c", 0, final, t)
        assert "final in [3, 5]" in str(found[-1]) and "2 indeterminate" in str(found[-1])


def test_rejected_increments_count_as_not_applied() -> None:
    t = tally(4, [1, 2], rejected=2)  # two 429s: nothing applied
    assert t.indeterminate == 0
    assert check_counter("c", 0, 2, t) == []
    assert kinds(check_counter("c", 0, 3, t)) == ["count"]


def test_returned_values_outside_start_and_final_are_violations() -> None:
    found = check_counter("c", 10, 12, tally(2, [10, 12]))  # 10 == start: not a new value
    assert any("returned values in (10, 12]" in str(v) and v.kind == "count" for v in found)


def test_a_read_above_start_plus_attempted_is_a_violation() -> None:
    assert check_counter("c", 0, 2, tally(2, [1, 2], max_read=2)) == []
    assert kinds(check_counter("c", 0, 2, tally(2, [1, 2], max_read=3))) == ["reads"]


def test_postgres_behind_or_missing_is_a_durability_violation() -> None:
    found = compare_durable({"0/a": 5, "0/b": 7, "1/c": 2}, {"0/a": 5, "0/b": 6, "1/c": None})
    assert [v.counter for v in found] == ["0/b", "1/c"]
    assert "PostgreSQL 6" in str(found[0]) and "no row in PostgreSQL" in str(found[1])


def test_duplicates_across_workers_are_found_after_merging_their_wire_tallies() -> None:
    a, b = Tally(), Tally()
    a.of("0/hot").attempted, a.of("0/hot").acked, a.of("0/hot").values = 2, 2, [1, 3]
    b.of("0/hot").attempted, b.of("0/hot").acked, b.of("0/hot").values = 2, 2, [2, 3]
    b.violation("reads", "0/hot: GET went backwards: 3 then 2")
    merged = Tally()
    for worker in (a, b):
        merged.merge(Tally.from_wire(worker.to_wire()))
    entry = merged.counters["0/hot"]
    assert (entry.attempted, entry.acked, sorted(entry.values)) == (4, 4, [1, 2, 3, 3])
    assert merged.violation_count == 1 and merged.violation_kinds == {"reads": 1}
    assert "atomicity" in kinds(check_counter("0/hot", 0, 3, entry))


def test_thresholds_flag_error_ratio_and_each_percentile_and_zero_disables() -> None:
    stats = LoadStats(requests=1000, failures=20, p50_ms=5, p95_ms=80, p99_ms=300, rps=100.0)
    found = check_thresholds(stats, Thresholds(0.01, 4, 50, 200))
    assert [v.expected.split()[0] for v in found] == ["error", "p50", "p95", "p99"]
    assert check_thresholds(stats, Thresholds(0.05, 0, 0, 0)) == []
    empty = LoadStats(0, 0, 0, 0, 0, 0.0)
    assert kinds(check_thresholds(empty, Thresholds())) == ["threshold"]


def test_a_summary_with_an_inline_violation_fails() -> None:
    summary = Summary(run_id="r", stats=LoadStats(1, 0, 1, 1, 1, 1.0), thresholds=Thresholds())
    assert summary.passed
    summary.inline_violations, summary.inline_violation_count = ["[reads] 0/a: went back"], 1
    assert not summary.passed and "RESULT: FAIL" in summary.render()


def test_inline_violations_are_counted_by_kind_beyond_the_recorded_ones() -> None:
    t = Tally()
    for i in range(MAX_RECORDED_VIOLATIONS + 50):
        t.violation("protocol", f"0/a: bad body {i}")
    t.violation("reads", "0/a: GET went backwards")
    assert len(t.violations) == MAX_RECORDED_VIOLATIONS and t.violations[0].startswith("[protocol]")
    assert t.violation_kinds == {"protocol": MAX_RECORDED_VIOLATIONS + 50, "reads": 1}
    summary = Summary(run_id="r", stats=LoadStats(1, 0, 1, 1, 1, 1.0), thresholds=Thresholds(),
                      inline_kinds=t.violation_kinds)  # fmt: skip
    assert summary.kinds()["protocol"] == MAX_RECORDED_VIOLATIONS + 50


def test_zipf_stays_in_range_and_prefers_low_ranks() -> None:
    zipf = Zipf(50, 1.1)
    draws = [zipf() for _ in range(5000)]
    assert 0 <= min(draws) and max(draws) < 50
    assert draws.count(0) > draws.count(10) > draws.count(49)


def test_driver_reads_locust_durations() -> None:
    assert [seconds(s) for s in ("45", "45s", "1m30s", "1h")] == [45, 45, 90, 3600]


# -- response bodies (DESIGN.md section 2) -------------------------------------------------------


def test_a_well_formed_success_body_gives_its_value() -> None:
    body = b'{"data": {"namespace": "n", "value": 42}' + META.encode() + b"}"
    assert success_problem(JSON, body, "n") == (42, "")
    assert success_problem("application/json; charset=utf-8", body, "n") == (42, "")


@pytest.mark.parametrize(
    ("content_type", "body", "why"),
    [
        (JSON, '{"data": {"namespace": "n", "value": 42}}', "no metadata.timestamp"),
        (JSON, '{"data": {"namespace": "n", "value": 42}, "metadata": {}}', "no metadata"),
        (JSON, '{"data": {"namespace": "n", "value": 1}, "metadata": {"timestamp": "now"}}',
         "not ISO 8601"),
        (JSON, '{"data": {"namespace": "n", "value": 1}, "metadata": '
               '{"timestamp": "2026-01-01T00:00:00"}}', "with a zone"),
        (JSON, '{"namespace": "n", "value": 42' + META + "}", "no data"),
        (JSON, '{"data": {"namespace": "n", "value": "42"}' + META + "}", "not a whole number"),
        (JSON, '{"data": {"namespace": "n", "value": true}' + META + "}", "not a whole number"),
        (JSON, '{"data": {"namespace": "m", "value": 42}' + META + "}", "data.namespace 'm'"),
        ("text/html", '{"data": {"namespace": "n", "value": 42}' + META + "}", "Content-Type"),
        (JSON, "<html>ok</html>", "not JSON"),
        (JSON, "[42]", "not a JSON object"),
    ],
)  # fmt: skip
def test_a_malformed_success_body_is_refused_with_the_reason(
    content_type: str, body: str, why: str
) -> None:
    value, problem = success_problem(content_type, body.encode(), "n")
    assert value == -1 and why in problem


def test_the_one_error_shape_passes_for_any_status() -> None:
    body = b'{"error": "unavailable", "message": "Redis is down"' + META.encode() + b"}"
    assert error_problem(JSON, body) == ""


@pytest.mark.parametrize(
    ("content_type", "body", "why"),
    [
        ("text/html", "<html><h1>502 Bad Gateway</h1></html>", "Content-Type 'text/html'"),
        (JSON, "Internal Server Error", "not JSON"),
        (JSON, '{"error": "unavailable", "message": "down"}', "no metadata.timestamp"),
        (JSON, '{"message": "down"' + META + "}", "no 'error'"),
        (JSON, '{"error": "unavailable"' + META + "}", "no 'message'"),
        (JSON, '{"error": "", "message": "down"' + META + "}", "no 'error'"),
    ],
)  # fmt: skip
def test_an_error_without_the_one_shape_is_refused_with_the_reason(
    content_type: str, body: str, why: str
) -> None:
    assert why in error_problem(content_type, body.encode())
