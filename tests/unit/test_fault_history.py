"""The fault suite's checker on hand-made histories: what must pass, and what must fail."""

from __future__ import annotations

import json

from tests.faults.history import Expectation, Op, Outcome, check, classify, recovery
from tests.faults.report import render

OK, FAIL, UNKNOWN = Outcome.OK, Outcome.FAIL, Outcome.UNKNOWN


def acks(counter: str, values: range | list[int], t0: float = 0.0) -> list[Op]:
    return [Op(counter, OK, t0 + i, t0 + i + 0.01, value=v) for i, v in enumerate(values)]


def body(message: str) -> bytes:
    return json.dumps({"error": "unavailable", "message": message}).encode()


def test_an_exact_history_passes_with_nothing_lost_or_counted_twice() -> None:
    ops = acks("a", range(1, 11)) + acks("b", range(6, 9))
    v = check("x", ops, {"a": 0, "b": 5}, {"a": 10, "b": 8}, {"a": 10, "b": 8}, Expectation())
    assert v.passed, v.problems
    assert (v.requests, v.acknowledged, v.lost, v.counted_twice) == (13, 13, 0, 0)
    assert v.recovery_s == 0.0


def test_acknowledged_increments_missing_from_the_final_value_are_lost() -> None:
    ops = acks("a", range(1, 11)) + acks("b", range(1, 4))
    v = check("x", ops, {}, {"a": 7, "b": 3}, {"a": 7, "b": 3}, Expectation())
    assert not v.passed
    assert (v.lost, v.lost_counters) == (3, 1)
    assert "3 acknowledged increments lost" in v.problems[0]


def test_a_loss_within_the_scenarios_bound_passes_and_one_beyond_it_fails() -> None:
    ops = acks("a", range(1, 11))
    assert check("x", ops, {}, {"a": 8}, {"a": 8}, Expectation(max_lost=2)).passed
    assert not check("x", ops, {}, {"a": 7}, {"a": 7}, Expectation(max_lost=2)).passed


def test_unknown_outcomes_excuse_extra_counts_but_not_losses() -> None:
    ops = acks("a", range(1, 6)) + [Op("a", UNKNOWN, 9, 10, error="timeout")] * 2
    assert check("x", ops, {}, {"a": 7}, {"a": 7}, Expectation(error_windows=None)).passed
    assert check("x", ops, {}, {"a": 5}, {"a": 5}, Expectation(error_windows=None)).passed
    v = check("x", ops, {}, {"a": 4}, {"a": 4}, Expectation(error_windows=None))
    assert v.lost == 1 and not v.passed


def test_a_count_above_acknowledged_plus_unknown_is_counted_twice() -> None:
    ops = acks("a", range(1, 6)) + [Op("a", FAIL, 9, 10, error="503 not applied")]
    v = check("x", ops, {}, {"a": 6}, {"a": 6}, Expectation(error_windows=None))
    assert v.counted_twice == 1 and not v.passed  # a definite failure was applied after all


def test_a_value_acknowledged_twice_fails_unless_the_scenario_loses_data() -> None:
    ops = acks("a", [1, 2, 3, 2, 3])  # a promoted replica answering from an older value
    v = check("x", ops, {}, {"a": 5}, {"a": 5}, Expectation())
    assert v.duplicate_values == 2 and not v.passed
    assert check("x", ops, {}, {"a": 5}, {"a": 5}, Expectation(duplicates_allowed=True)).passed


def test_errors_outside_the_faults_window_fail_and_inside_it_pass() -> None:
    ops = acks("a", range(1, 4)) + [Op("a", UNKNOWN, 5.0, 6.0, error="503 may have applied")]
    ops += acks("a", range(4, 6), t0=7.0)
    final = {"a": 5}
    assert check("x", ops, {}, final, final, Expectation(error_windows=[(4.0, 6.5)])).passed
    v = check("x", ops, {}, final, final, Expectation(error_windows=[(0.0, 1.0)]))
    assert not v.passed and "outside the fault's window" in v.problems[0]
    assert not check("x", ops, {}, final, final, Expectation()).passed  # no errors allowed


def test_a_500_always_fails() -> None:
    ops = acks("a", range(1, 3)) + [Op("a", UNKNOWN, 5, 6, error="500")]
    v = check("x", ops, {}, {"a": 2}, {"a": 2}, Expectation(error_windows=None))
    assert not v.passed and v.errors == {"500": 1}


def test_postgresql_and_the_api_must_agree_after_the_final_flush() -> None:
    ops = acks("a", range(1, 4))
    v = check("x", ops, {}, {"a": 3}, {"a": 4}, Expectation())
    assert not v.passed and "differ between PostgreSQL and the API" in v.problems[0]


def test_recovery_runs_from_the_fault_to_the_first_200_after_the_last_error() -> None:
    ops = acks("a", [1], t0=0.0)
    ops += [Op("a", UNKNOWN, 10.0, 11.0, error="timeout"), Op("a", FAIL, 12.0, 12.5, error="401")]
    ops += acks("a", [2, 3], t0=13.0)
    assert recovery(ops, fault_at=9.0) == 13.01 - 9.0
    assert recovery(ops, fault_at=None) == 0.0
    assert recovery(acks("a", [1, 2]), fault_at=0.5) == 0.0
    never = acks("a", [1]) + [Op("a", UNKNOWN, 5.0, 6.0, error="timeout")]
    assert recovery(never, fault_at=4.0) is None
    v = check("x", never, {}, {"a": 1}, {"a": 1}, Expectation(error_windows=None), fault_at=4.0)
    assert not v.passed and "never recovered" in v.problems[0]


def test_answers_are_classified_by_status_and_body() -> None:
    ok = json.dumps({"data": {"namespace": "a", "value": 42}}).encode()
    assert classify(200, ok) == (OK, "", 42)
    assert classify(200, b"<html>")[0] is UNKNOWN
    assert classify(401, body("Missing API key")) == (FAIL, "401", None)
    may = body("Counter store unavailable, increment may not have applied")
    assert classify(503, may) == (UNKNOWN, "503 may have applied", None)
    assert classify(503, body("Database unavailable, retry later"))[0] is FAIL
    assert classify(503, body("Redis unavailable: the increment did not run"))[0] is FAIL
    assert classify(503, body("something new"))[0] is UNKNOWN  # unknown wording: not definite
    assert classify(500, body("Internal server error")) == (UNKNOWN, "500", None)


def test_the_report_shows_each_scenario_with_its_bound_and_verdict() -> None:
    good = check("a graceful failover", acks("a", [1, 2]), {}, {"a": 2}, {"a": 2}, Expectation())
    bad = check("b kill", acks("a", [1, 2, 3]), {}, {"a": 1}, {"a": 1}, Expectation(max_lost=1))
    text = render([good, bad], {"started": "20261202T000000Z", "mode": "quick"})
    assert "| a graceful failover | 2 |" in text
    assert "FAIL" in text and "2 acknowledged increments lost" in text
    assert text.count("\n| ") >= 3
