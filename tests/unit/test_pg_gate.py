"""CoopGate: at most N requests of a worker in PostgreSQL's pool, the rest wait in order."""

from __future__ import annotations

import time
from typing import Any

from service.fastpath.pg_coop import CoopGate
from tests.greenloop import GreenLoop


def test_at_most_size_inside_and_places_handed_over_in_arrival_order() -> None:
    loop = GreenLoop()
    gate = CoopGate(2, loop.hooks)
    inside: list[int] = []
    most = [0]
    entered: list[int] = []

    def user(i: int) -> Any:
        def run() -> bool:
            ok = gate.acquire(1)
            entered.append(i)
            inside.append(i)
            most[0] = max(most[0], len(inside))
            loop.sleep(0.02)  # using the connection
            inside.remove(i)
            gate.release()
            return ok

        return run

    assert loop.run(*[user(i) for i in range(6)]) == [True] * 6
    assert most[0] == 2
    assert entered == list(range(6))
    assert gate.free == 2  # every place came back


def test_a_waiter_gives_up_after_its_timeout_and_the_others_still_get_in() -> None:
    loop = GreenLoop()
    gate = CoopGate(1, loop.hooks)
    waited: dict[str, float] = {}

    def holder() -> bool:
        assert gate.acquire(1)
        loop.sleep(0.4)
        gate.release()
        return True

    def impatient() -> bool:
        started = time.monotonic()
        ok = gate.acquire(0.1)
        waited["impatient"] = time.monotonic() - started
        return ok

    def patient() -> bool:
        ok = gate.acquire(1)
        if ok:
            gate.release()
        return ok

    assert loop.run(holder, impatient, patient) == [True, False, True]
    assert 0.05 < waited["impatient"] < 0.35  # gave up on time, not when the holder left
    assert gate.free == 1
