"""Mixed read/write: 90% GETs, 10% POSTs over a handful of counters.

Shows the read path under a write load, as most real traffic looks: every GET body
is checked, GETs never go backwards for a user, never miss that user's own
acknowledged increments, and never exceed start + attempted increments.

    locust -f loadtest/mixed_read_write.py --headless -u 10 -r 10 -t 20s --host "$COUNTER_URL"
"""

from __future__ import annotations

import random

from counterload.options import Config
from counterload.tally import counter_id
from counterload.users import CounterUser
from locust import task

COUNTERS = 8


def mixed_counter(config: Config, run_id: str, j: int) -> tuple[int, str]:
    return j % len(config.api_keys), f"{run_id}-mix{j}"


class MixedReadWriteUser(CounterUser):
    scenario = "mixed"

    @classmethod
    def counters(cls, config: Config, run_id: str) -> list[str]:
        return [counter_id(*mixed_counter(config, run_id, j)) for j in range(COUNTERS)]

    @task(9)
    def read_one(self) -> None:
        self.read(*mixed_counter(self.config, self.run_id, random.randrange(COUNTERS)))

    @task(1)
    def increment_one(self) -> None:
        self.increment(*mixed_counter(self.config, self.run_id, random.randrange(COUNTERS)))
