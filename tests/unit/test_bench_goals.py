"""Benchmark goals read "not measured" when the number behind them cannot be trusted."""

from __future__ import annotations

from typing import Any

from benchmarks import goals


def sweep_row(app: str, rps: float, status: int = 0, timeout: int = 0) -> dict[str, Any]:
    errors = {"connect": 0, "read": 0, "write": 0, "status": status, "timeout": timeout}
    return {
        "app": app,
        "workers": 2,
        "phase": "sweep",
        "workload": goals.MAIN,
        "ok_rps": rps,
        "errors": errors,
        "cpu": {},
    }


def latency_point(**flags: Any) -> dict[str, Any]:
    point = {
        "app": goals.PRODUCT,
        "fraction": 0.5,
        "latency_ms": {"p99": 3.0},
        "generator_bound": False,
        "saturated": False,
        "non2xx": 0,
        "failed": 0,
        "lost": 0,
    }
    return point | flags


def rounds(*p99s: float | None, **flags: Any) -> list[dict[str, Any]]:
    """One open-loop point measured in several rounds, with these p99s in that order."""
    return [latency_point(latency_ms={"p99": p99}, round=i, **flags) for i, p99 in enumerate(p99s)]


def results(
    latency: dict[str, Any] | list[dict[str, Any]] | None = None,
    flush_lag: dict[str, Any] | None = None,
    throughput: list[dict[str, Any]] | None = None,
) -> dict[str, Any]:
    apps = [goals.PRODUCT, "naive-incr", "go-peer"]
    r: dict[str, Any] = {
        "apps": [{"name": a} for a in apps],
        "throughput": throughput
        or [sweep_row(goals.PRODUCT, 30_000), sweep_row("naive-incr", 10_000)]
        + [sweep_row("go-peer", 40_000)],
        "latency": latency if isinstance(latency, list) else [latency or latency_point()],
        "flush_lag": flush_lag
        or {"lag_s": {"p99": 1.0}, "never_seen": 0, "send_errors": 0, "flush_interval_s": 1.0},
        "memory": {"bytes_per_counter_flushed": 25.0},
    }
    r["ratios"] = goals.ratios(r, 2)
    return r


def goal(r: dict[str, Any], starts: str) -> dict[str, Any]:
    return next(g for g in goals.goals(r) if g["goal"].startswith(starts))


def test_clean_points_are_judged() -> None:
    r = results()
    assert goal(r, "p99 latency")["met"] is True
    assert goal(r, "flush lag")["met"] is True
    assert goal(r, "increment throughput vs naive")["met"] is True
    assert goal(r, "service / Go peer")["met"] is True  # 0.75 >= 0.60
    assert goal(r, "service / Go peer")["measured"] == 0.75


def test_a_saturated_half_load_point_is_not_measured_and_says_why() -> None:
    g = goal(results(latency_point(saturated=True)), "p99 latency")
    assert g["met"] is None
    assert "saturated" in g["note"]
    assert g["measured"] == 3.0  # the number is still shown


def test_a_generator_bound_point_is_not_measured() -> None:
    g = goal(results(latency_point(generator_bound=True)), "p99 latency")
    assert g["met"] is None
    assert "generator-bound" in g["note"]


def test_one_failed_or_non_2xx_request_makes_the_latency_goal_not_measured() -> None:
    assert goal(results(latency_point(non2xx=1)), "p99 latency")["met"] is None
    assert goal(results(latency_point(lost=1)), "p99 latency")["met"] is None


def test_flush_lag_with_samples_never_seen_in_postgres_is_not_measured() -> None:
    lag = {"lag_s": {"p99": 1.0}, "never_seen": 3, "send_errors": 0, "flush_interval_s": 1.0}
    g = goal(results(flush_lag=lag), "flush lag")
    assert g["met"] is None
    assert "never seen" in g["note"]


def test_flush_lag_with_failed_sampler_requests_is_not_measured() -> None:
    lag = {"lag_s": {"p99": 1.0}, "never_seen": 0, "send_errors": 2, "flush_interval_s": 1.0}
    assert goal(results(flush_lag=lag), "flush lag")["met"] is None


def test_a_throughput_ratio_with_failed_requests_on_either_side_is_not_measured() -> None:
    rows = [
        sweep_row(goals.PRODUCT, 30_000),
        sweep_row("naive-incr", 10_000, status=5),
        sweep_row("go-peer", 40_000, timeout=1),
    ]
    r = results(throughput=rows)
    assert goal(r, "increment throughput vs naive")["met"] is None
    assert goal(r, "service / Go peer")["met"] is None
    assert "failed" in goal(r, "service / Go peer")["note"]


def test_the_go_peer_ratio_is_printed_with_the_other_baselines() -> None:
    assert "service/go-peer" in results()["ratios"]


def test_memory_at_scale_is_judged_only_on_a_complete_fill() -> None:
    r = results()
    scale = {"scale_counters": 10_000_000, "scale_target_counters": 10_000_000}
    r["memory"] |= scale | {"scale_complete": True, "scale_bytes_per_counter_flushed": 30.0}
    assert goal(r, "Redis memory (bytes) per counter at 10,000,000")["met"] is True
    r["memory"] |= {"scale_counters": 4_000_000, "scale_complete": False}
    g = goal(r, "Redis memory (bytes) per counter at 10,000,000")
    assert g["met"] is None
    assert "partial" in g["note"]


def test_memory_at_scale_is_not_measured_by_the_quick_profile() -> None:
    assert goal(results(), "Redis memory (bytes) per counter at 10,000,000")["met"] is None


def test_memory_at_scale_is_judged_at_the_advised_bucket_count_with_the_default_beside() -> None:
    r = results()
    r["memory"] |= {
        "buckets": 4096,
        "scale_counters": 10_000_000,
        "scale_target_counters": 10_000_000,
        "scale_bytes_per_counter_flushed": 85.7,
        "scale_sized_buckets": 32767,
        "scale_sized_counters": 10_000_000,
        "scale_sized_complete": True,
        "scale_sized_bytes_per_counter_flushed": 23.0,
    }
    g = goal(r, "Redis memory (bytes) per counter at 10,000,000 counters, 32,767 buckets")
    assert (g["measured"], g["met"]) == (23.0, True)
    assert "85.7 with the default 4,096 buckets" in g["note"]
    r["memory"] |= {"scale_sized_complete": False}
    assert goal(r, "Redis memory (bytes) per counter at 10,000,000")["met"] is None


def test_the_latency_goal_is_judged_on_the_round_with_the_median_p99() -> None:
    g = goal(results(rounds(3.0, 41.0, 4.5)), "p99 latency")
    assert (g["measured"], g["met"]) == (4.5, True)
    g = goal(results(rounds(6.0, 2.0, 40.0)), "p99 latency")
    assert (g["measured"], g["met"]) == (6.0, False)


def test_of_two_rounds_the_worse_is_the_median_and_a_round_without_a_p99_ranks_last() -> None:
    assert goal(results(rounds(2.0, 9.0)), "p99 latency")["measured"] == 9.0
    assert goal(results(rounds(None, 2.0, 3.0)), "p99 latency")["measured"] == 3.0
    assert goal(results(rounds(None, None, 3.0)), "p99 latency")["measured"] is None


def test_the_median_round_keeps_its_own_flags_and_lists_every_rounds_p99() -> None:
    points = rounds(3.0, 4.0, 50.0)
    points[1]["saturated"] = True
    g = goal(results(points), "p99 latency")
    assert g["met"] is None and "saturated" in g["note"]
    (shown,) = goals.median_rounds(points)
    assert shown["round"] == 1 and shown["p99_rounds"] == [3.0, 4.0, 50.0]


def batch(
    rate: int, acked: int = 1_000_000, flushed: int | None = 1_000_400, status: int = 0
) -> dict[str, Any]:
    errors = {"connect": 0, "read": 0, "write": 0, "status": status, "timeout": 0}
    return {
        "batch_size": 100,
        "batch_increments_per_s": rate,
        "ratio_to_baseline": 2.7,
        "acknowledged_increments": acked,
        "flushed_to_postgresql": flushed,
        "errors": errors,
    }


def test_the_batch_goal_is_met_only_at_its_rate_with_every_increment_flushed() -> None:
    assert goals.batch_goal(batch(250_000))["met"] is True
    assert goals.batch_goal(batch(249_999))["met"] is False
    lost = goals.batch_goal(batch(300_000, acked=1_000_000, flushed=999_999))
    assert lost["met"] is False and "lost" in lost["note"]


def test_the_batch_goal_is_not_measured_when_a_request_failed_or_nothing_was_flushed() -> None:
    assert goals.batch_goal(batch(300_000, status=3))["met"] is None
    assert goals.batch_goal(batch(300_000, flushed=None))["met"] is None
    assert goals.batch_goal({"error": "RuntimeError: boom"})["met"] is None
    assert goals.batch_goal({})["note"] == "not run"
