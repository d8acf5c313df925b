"""The failed-authentication tarpit: its budget, what it holds, and what it never holds."""

from __future__ import annotations

import time

from service.api.tarpit import FailureBudget, Tarpit
from tests.greenloop import GreenLoop


class Clock:
    def __init__(self) -> None:
        self.now = 100.0

    def __call__(self) -> float:
        return self.now


def test_the_budget_allows_a_burst_of_one_seconds_worth_then_refills_at_its_rate() -> None:
    clock = Clock()
    budget = FailureBudget(10, clock)
    assert [budget.spend() for _ in range(12)] == [True] * 10 + [False] * 2
    clock.now += 0.25  # 2.5 refilled
    assert [budget.spend() for _ in range(3)] == [True, True, False]
    clock.now += 60  # refills to the burst, not beyond
    assert sum(budget.spend() for _ in range(20)) == 10


def test_a_fractional_rate_still_allows_one_failure() -> None:
    clock = Clock()
    budget = FailureBudget(0.5, clock)
    assert [budget.spend(), budget.spend()] == [True, False]
    clock.now += 2
    assert budget.spend()


def test_failures_past_the_budget_are_held_for_the_delay_and_within_it_are_not() -> None:
    loop = GreenLoop()
    tarpit = Tarpit(loop.hooks, rate=2, delay=0.2, max_held=100)
    done: list[float] = []
    start = time.monotonic()

    def fail() -> None:
        tarpit.failed()
        done.append(time.monotonic() - start)

    loop.run(*[fail] * 5)
    quick, held = sorted(done)[:2], sorted(done)[2:]
    assert max(quick) < 0.1  # the budget's two answered at once
    assert min(held) >= 0.2  # the other three held for the delay, all at the same time
    assert max(held) < 0.3 + 0.2
    assert tarpit.total_held == 3 and tarpit.held == 0


def test_no_more_than_max_held_are_parked_at_once() -> None:
    loop = GreenLoop()
    tarpit = Tarpit(loop.hooks, rate=1, delay=0.3, max_held=2)
    seen: list[int] = []

    def fail() -> None:
        seen.append(tarpit.held)
        tarpit.failed()

    loop.run(*[fail] * 6)
    assert tarpit.total_held == 2  # 1 from the budget, 2 held, 3 answered at once
    assert max(seen) == 2


def test_a_zero_rate_or_delay_or_no_loop_never_holds() -> None:
    loop = GreenLoop()
    for tarpit in (
        Tarpit(loop.hooks, rate=0, delay=1, max_held=10),
        Tarpit(loop.hooks, rate=1, delay=0, max_held=10),
        Tarpit(None, rate=1, delay=1, max_held=10),
    ):
        start = time.monotonic()
        loop.run(*[tarpit.failed] * 5)
        assert tarpit.total_held == 0
        assert time.monotonic() - start < 0.5


def test_outside_a_request_greenlet_nothing_is_held() -> None:
    loop = GreenLoop()
    tarpit = Tarpit(loop.hooks, rate=1, delay=5, max_held=10)
    for _ in range(3):  # the loop's own greenlet (no request): must not park
        tarpit.failed()
    assert tarpit.total_held == 0
