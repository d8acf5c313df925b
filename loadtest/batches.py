"""Batches: each request carries 100 increments (by 1..5) over 50 counters, repeats
included, through ``POST /v1/misc/counters``.

Every item is tallied on its own (a value acknowledges it, ``unavailable`` leaves it
indeterminate), so the end-of-run check is the same as for single increments: each
counter's final value is its start plus the sum of the acknowledged ``by``s.

    locust -f loadtest/batches.py --headless -u 4 -r 4 -t 20s --host "$COUNTER_URL"
"""

from __future__ import annotations

import random

from counterload.options import Config
from counterload.tally import counter_id
from counterload.users import CounterUser
from locust import task

COUNTERS = 50
ITEMS = 100


class BatchUser(CounterUser):
    scenario = "batch"

    @classmethod
    def counters(cls, config: Config, run_id: str) -> list[str]:
        return [counter_id(0, f"{run_id}-b{i}") for i in range(COUNTERS)]

    @task
    def post_a_batch(self) -> None:
        items = [
            (f"{self.run_id}-b{random.randrange(COUNTERS)}", random.randint(1, 5))
            for _ in range(ITEMS)
        ]
        self.batch(0, items)
