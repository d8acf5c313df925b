"""Reads racing writes: GETs and POSTs on the same two counters, back to back.

Shows that reads are consistent while increments land between them. A GET may
already see an increment whose POST response has not arrived yet, so the sound
checks are: each user's successive GETs of a counter never decrease, never fall
below that user's own acknowledged increments, and never exceed start + attempted
(checked as they happen in a single process, and at the end in distributed runs).

    locust -f loadtest/reads_racing_writes.py --headless -u 10 -r 10 -t 20s --host "$COUNTER_URL"
"""

from __future__ import annotations

import random

from counterload.options import Config
from counterload.tally import counter_id
from counterload.users import CounterUser
from locust import task

COUNTERS = 2


def race_counter(config: Config, run_id: str, j: int) -> tuple[int, str]:
    return j % len(config.api_keys), f"{run_id}-race{j}"


class ReadsRacingWritesUser(CounterUser):
    scenario = "race"

    @classmethod
    def counters(cls, config: Config, run_id: str) -> list[str]:
        return [counter_id(*race_counter(config, run_id, j)) for j in range(COUNTERS)]

    @task
    def increment_then_read(self) -> None:
        counter = race_counter(self.config, self.run_id, random.randrange(COUNTERS))
        self.increment(*counter)
        self.read(*counter)

    @task
    def read_other(self) -> None:
        self.read(*race_counter(self.config, self.run_id, random.randrange(COUNTERS)))
