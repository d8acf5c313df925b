"""Increment by N: every request adds a random ``by`` (1..1000) to one of a few counters.

The tally counts amounts, so the end-of-run check is that each counter's final value
equals its start plus the sum of the acknowledged ``by``s (within the indeterminate
amounts of 503s), and every returned value is distinct.

    locust -f loadtest/by_n.py --headless -u 10 -r 10 -t 20s --host "$COUNTER_URL"
"""

from __future__ import annotations

import random

from counterload.options import Config
from counterload.tally import counter_id
from counterload.users import CounterUser
from locust import task

COUNTERS = 8


class ByNUser(CounterUser):
    scenario = "by-n"

    @classmethod
    def counters(cls, config: Config, run_id: str) -> list[str]:
        return [counter_id(0, f"{run_id}-by{i}") for i in range(COUNTERS)]

    @task
    def increment_by_n(self) -> None:
        self.increment(0, f"{self.run_id}-by{random.randrange(COUNTERS)}", random.randint(1, 1000))
