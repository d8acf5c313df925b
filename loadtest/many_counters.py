"""Many counters: increments Zipf-distributed over N namespaces across several tenants.

Shows that counters stay independent and tenant-scoped under a realistic skew: a
few hot counters, a long tail of cold ones (each new one hydrated from PostgreSQL),
spread over buckets on every Redis Cluster node. Rank k is namespace
``<run>-z<k>`` of API key ``k mod keys``; ``--namespaces`` sets N, ``--zipf-s`` the skew.

    LOADTEST_API_KEYS=key1,key2,key3 locust -f loadtest/many_counters.py --headless \
        -u 10 -r 10 -t 20s --host "$COUNTER_URL"
"""

from __future__ import annotations

from counterload.options import Config
from counterload.tally import counter_id
from counterload.users import CounterUser
from counterload.zipf import Zipf
from locust import task


def rank_counter(config: Config, run_id: str, rank: int) -> tuple[int, str]:
    return rank % len(config.api_keys), f"{run_id}-z{rank}"


class ManyCountersUser(CounterUser):
    scenario = "many"

    @classmethod
    def counters(cls, config: Config, run_id: str) -> list[str]:
        return [counter_id(*rank_counter(config, run_id, k)) for k in range(config.namespaces)]

    def on_start(self) -> None:
        self.zipf = Zipf(self.config.namespaces, self.config.zipf_s)

    @task
    def increment_a_zipf_counter(self) -> None:
        self.increment(*rank_counter(self.config, self.run_id, self.zipf()))
