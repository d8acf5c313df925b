"""Latency and flush-lag percentiles count the requests that never came back."""

from __future__ import annotations

import argparse
import time

from benchmarks.flush_lag import FlushLag
from benchmarks.openloop import Generator, summarize
from benchmarks.percentiles import percentiles


def test_without_losses_percentiles_are_nearest_rank() -> None:
    p = percentiles([float(i) for i in range(1, 101)])
    assert (p["p50"], p["p90"], p["p99"], p["max"]) == (50.0, 90.0, 99.0, 100.0)


def test_lost_samples_rank_above_every_answered_one() -> None:
    p = percentiles([1.0] * 98, lost=2)
    assert p["p50"] == 1.0
    assert p["p99"] is None  # rank 99 of 100 is a lost request: unknown, not 1.0
    assert p["max"] is None


def generator(statuses: list[int], latency_s: float, measured: int) -> Generator:
    gen = Generator([b""])
    gen.measure_from = 0.0
    gen.measured = measured
    for status in statuses:  # dispatched latency_s ago
        gen.record(1.0, time.monotonic() - latency_s, status)
    return gen


def point(gen: Generator, total: int) -> dict[str, object]:
    return summarize(argparse.Namespace(rate=100.0, duration=1.0), gen, total)


def test_open_loop_percentiles_include_non_2xx_responses() -> None:
    gen = generator([200] * 97, 0.001, 100)
    for _ in range(3):  # three slow 503s
        gen.record(1.0, time.monotonic() - 0.5, 503)
    p = point(gen, 100)
    lat = p["latency_ms"]
    assert isinstance(lat, dict)
    assert lat["p99"] is not None and lat["p99"] >= 500  # the slow errors, not the fast 2xx
    assert p["completed_2xx"] == 97
    assert p["non2xx"] == 3


def test_open_loop_requests_without_a_response_make_the_tail_unknown() -> None:
    gen = generator([200] * 95, 0.001, 100)  # 5 due after warm-up never answered
    p = point(gen, 100)
    assert p["lost"] == 5
    lat = p["latency_ms"]
    assert isinstance(lat, dict)
    assert lat["p50"] is not None
    assert lat["p99"] is None


def test_flush_lag_counts_samples_never_seen_in_postgres() -> None:
    lag = FlushLag(port=1, api_key="", dsn="", tenant="bench", n_buckets=4096)
    lag.lags = [0.5] * 97
    lag.pending["lag-0"].extend([(10, 0.0), (11, 0.0), (12, 0.0)])  # acknowledged, never seen
    r = lag.result(1.0)
    assert r["never_seen"] == 3
    assert r["lag_s"]["p50"] == 0.5
    assert r["lag_s"]["p99"] is None  # not 0.5: the unseen samples are the slowest
