"""Hot counter: every user increments one namespace, as fast as it can.

Shows atomicity under the worst contention there is: all users race on a single
counter (one Redis hash field), so a read-then-write anywhere in the path shows up
as the same value returned twice, or as a final value below start + acknowledged.

    locust -f loadtest/hot_counter.py --headless -u 10 -r 10 -t 20s --host "$COUNTER_URL"
"""

from __future__ import annotations

from counterload.options import Config
from counterload.tally import counter_id
from counterload.users import CounterUser
from locust import task


class HotCounterUser(CounterUser):
    scenario = "hot"

    @classmethod
    def counters(cls, config: Config, run_id: str) -> list[str]:
        return [counter_id(0, f"{run_id}-hot")]

    @task
    def increment_the_hot_counter(self) -> None:
        self.increment(0, f"{self.run_id}-hot")
