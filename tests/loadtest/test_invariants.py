"""The load-test suite's checker: pure logic, a broken endpoint it must fail, the real
service it must pass.

Locust runs here are short (about 10 s, a few users) and always bounded by ``-t``.
"""

from __future__ import annotations

import os
import uuid
from collections.abc import Iterator
from pathlib import Path
from typing import Any

import pytest

from loadtest.counterload.invariants import bounds, check_counter, compare_durable
from loadtest.counterload.report import Summary
from loadtest.counterload.tally import CounterTally, Tally
from loadtest.counterload.thresholds import LoadStats, Thresholds, check_thresholds
from loadtest.counterload.zipf import Zipf
from loadtest.run import seconds
from service.apikeys import create_key
from tests.loadtest import harness

FLUSHER = harness.BIN / "counter-flusher"


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


def test_final_above_start_plus_attempted_is_a_phantom_increment() -> None:
    found = check_counter("c", 0, 4, tally(3, [1, 2, 3]))
    assert kinds(found) == ["atomicity"]
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
    assert kinds(check_counter("c", 0, 3, t)) == ["atomicity"]


def test_returned_values_outside_start_and_final_are_violations() -> None:
    found = check_counter("c", 10, 12, tally(2, [10, 12]))  # 10 == start: not a new value
    assert any("returned values in (10, 12]" in str(v) for v in found)


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
    b.violation("[reads] 0/hot: GET went backwards: 3 then 2")
    merged = Tally()
    for worker in (a, b):
        merged.merge(Tally.from_wire(worker.to_wire()))
    entry = merged.counters["0/hot"]
    assert (entry.attempted, entry.acked, sorted(entry.values)) == (4, 4, [1, 2, 3, 3])
    assert merged.violation_count == 1
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


def test_zipf_stays_in_range_and_prefers_low_ranks() -> None:
    zipf = Zipf(50, 1.1)
    draws = [zipf() for _ in range(5000)]
    assert 0 <= min(draws) and max(draws) < 50
    assert draws.count(0) > draws.count(10) > draws.count(49)


def test_driver_reads_locust_durations() -> None:
    assert [seconds(s) for s in ("45", "45s", "1m30s", "1h")] == [45, 45, 90, 3600]


# -- (b) a non-atomic endpoint must fail the run -------------------------------------------------


def test_run_against_a_read_then_write_endpoint_fails_with_an_atomicity_violation(
    tmp_path: Path,
) -> None:
    with harness.broken_server(tmp_path) as url:
        run = harness.locust(
            ["hot_counter.py", "reads_racing_writes.py"], url,
            {"LOADTEST_API_KEYS": "tenant-a,tenant-b"}, tmp_path, "-u", "6", "-r", "6", "-t", "8s",
        )  # fmt: skip
    assert run.code == 1, run.output
    assert "VIOLATION [atomicity]" in run.output and "returned more than once" in run.output
    assert "RESULT: FAIL" in run.output
    assert run.summary["passed"] is False and run.summary["violation_kinds"]["atomicity"] >= 1


# -- (c) the real service must pass -------------------------------------------------------------


@pytest.fixture(scope="module")
def service(
    tmp_path_factory: pytest.TempPathFactory, pg_dsn: str, cluster_servers: tuple[str, Any]
) -> Iterator[dict[str, str]]:
    """gunicorn (2 workers) on the test Redis Cluster and PostgreSQL, plus the flusher if any.

    Yields the LOADTEST_* environment for a run: host, keys of 3 fresh tenants, and the
    PostgreSQL DSN only when a flusher runs (else the durability check is skipped).
    """
    tmp = tmp_path_factory.mktemp("service")
    port = harness.free_port()
    env = {
        **os.environ, "COUNTER_PG_DSN": pg_dsn, "COUNTER_REDIS_NODES": cluster_servers[0],
        "COUNTER_BIND": f"127.0.0.1:{port}", "COUNTER_WORKERS": "2",
        "COUNTER_FLUSH_INTERVAL": "0.5", "COUNTER_FLUSHER_METRICS_PORT": "0",
    }  # fmt: skip
    env.pop("COUNTER_REDIS_URL", None)
    gunicorn = [str(harness.BIN / "gunicorn"), "-c", "python:service.gunicorn_conf",
                "service.wsgi:app"]  # fmt: skip
    tenants = [f"lt{uuid.uuid4().hex[:10]}" for _ in range(3)]
    run_env = {
        "LOADTEST_HOST": f"http://127.0.0.1:{port}",
        "LOADTEST_API_KEYS": ",".join(create_key(pg_dsn, t)[1] for t in tenants),
        "LOADTEST_FLUSH_WAIT": "10",
    }
    with harness.process(gunicorn, env, tmp / "gunicorn.log") as web:
        harness.wait_http_ok(run_env["LOADTEST_HOST"] + "/readyz", web)
        if not FLUSHER.exists():
            yield {**run_env, "LOADTEST_PG_CHECK": "off"}
            return
        with harness.process([str(FLUSHER)], env, tmp / "flusher.log"):
            yield {**run_env, "LOADTEST_PG_DSN": pg_dsn}


@pytest.fixture(scope="module")
def local_run(service: dict[str, str], tmp_path_factory: pytest.TempPathFactory) -> harness.Outcome:
    env = {**service, "LOADTEST_DURATION": "10s", "LOADTEST_USERS": "6"}
    return harness.driver(env, tmp_path_factory.mktemp("local-run"))


def test_real_service_keeps_every_invariant_in_all_scenarios(local_run: harness.Outcome) -> None:
    assert local_run.code == 0, local_run.output
    assert "RESULT: PASS" in local_run.output
    s = local_run.summary
    assert s["passed"] and s["violations"] == [] and s["inline_violation_count"] == 0
    assert s["acked"] > 100 and s["reads"] > 100 and s["counters"] > 10
    assert s["stats"]["requests"] > 0 and s["stats"]["error_ratio"] <= 0.01


def test_real_service_postgres_equals_redis_after_a_flush(local_run: harness.Outcome) -> None:
    if not FLUSHER.exists():
        pytest.skip(f"{FLUSHER} is not installed yet: the PostgreSQL == Redis part is skipped")
    assert local_run.summary["durability"].startswith("OK"), local_run.output


def test_distributed_master_and_two_workers_merge_tallies_and_pass(
    service: dict[str, str], tmp_path: Path
) -> None:
    env = {**service, "LOADTEST_WORKERS": "2", "LOADTEST_SCENARIO": "hot,many",
           "LOADTEST_DURATION": "8s", "LOADTEST_USERS": "6"}  # fmt: skip
    run = harness.driver(env, tmp_path)
    assert run.code == 0, run.output
    s = run.summary
    assert s["workers"] == "2 of 2 workers reported", run.output
    assert s["passed"] and s["acked"] > 100 and s["counters"] > 2
    assert (tmp_path / "hot+many.html").is_file() and (tmp_path / "hot+many_stats.csv").is_file()
