"""A batched histogram, pushed by one loop timer, ends exactly where direct observations do."""

from __future__ import annotations

from prometheus_client import CollectorRegistry, Histogram

from service.api.metrics import BatchedHistogram
from tests.greenloop import GreenLoop

VALUES = [0.0005, 0.0006, 0.001, 0.02, 7.0, 100.0, 0.0]  # bounds themselves included
LABELS = ("/v1/misc/counter/{namespace:path}", "POST", "2xx")


def histogram(registry: CollectorRegistry) -> Histogram:
    return Histogram(
        "t_seconds", "test", ["route", "method", "status_class"], registry=registry,
        buckets=(0.0005, 0.001, 0.025, 1, 10),
    )  # fmt: skip


def samples(registry: CollectorRegistry) -> dict[tuple[str, str], float]:
    return {
        (s.name, s.labels.get("le", "")): s.value
        for family in registry.collect()
        for s in family.samples
        if not s.name.endswith("_created")
    }


def test_a_batched_histogram_matches_direct_observations_after_one_timer() -> None:
    direct, batched = CollectorRegistry(), CollectorRegistry()
    plain = histogram(direct)
    loop = GreenLoop()
    batch = BatchedHistogram(histogram(batched), loop.hooks)
    for value in VALUES:
        plain.labels(*LABELS).observe(value)
        batch.observe(LABELS, value)
    assert len(loop.timers) == 1  # one push scheduled, however many observations
    assert samples(batched).get(("t_seconds_count", ""), 0.0) == 0.0  # nothing pushed yet
    for _, fire in loop.timers:
        fire()
    assert samples(batched) == samples(direct)
    assert samples(batched)[("t_seconds_bucket", "0.0005")] == 2  # 0.0 and 0.0005
    batch.observe(LABELS, 0.5)  # the next observation schedules the next push
    assert len(loop.timers) == 2
