"""Atomicity under real concurrency: threads hammering one counter through the app."""

from __future__ import annotations

from concurrent.futures import ThreadPoolExecutor
from typing import Any

from service.api.store import CounterStore
from tests.builders import NewTenant

THREADS, PER_THREAD = 16, 100


def test_16_threads_x_100_increments_return_each_value_exactly_once(
    client: Any, new_tenant: NewTenant
) -> None:
    _, key = new_tenant()
    headers = {"requiems-api-key": key}
    path = "/v1/misc/counter/hot"
    start = client.simulate_post(path, headers=headers).json["data"]["value"]

    def worker(_: int) -> list[int]:
        return [
            client.simulate_post(path, headers=headers).json["data"]["value"]
            for _ in range(PER_THREAD)
        ]

    with ThreadPoolExecutor(THREADS) as pool:
        values = [v for chunk in pool.map(worker, range(THREADS)) for v in chunk]

    assert sorted(values) == list(range(start + 1, start + THREADS * PER_THREAD + 1))
    final = client.simulate_get(path, headers=headers).json["data"]["value"]
    assert final == start + THREADS * PER_THREAD


def test_concurrent_first_increments_hydrate_once(
    store: CounterStore, new_tenant: NewTenant
) -> None:
    """Many threads racing on a brand-new counter: the seed is applied once, no value lost."""
    tenant, _ = new_tenant()
    with ThreadPoolExecutor(THREADS) as pool:
        values = list(pool.map(lambda _: store.increment(tenant, "fresh"), range(THREADS * 4)))
    assert sorted(values) == list(range(1, THREADS * 4 + 1))
