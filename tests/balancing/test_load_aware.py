"""least-connections, lc/wlc and p2c prefer the less loaded instances."""

from __future__ import annotations

import random
from collections import Counter

import pytest

from tidegate.balancing.schedulers.p2c import PowerOfTwoChoices

from .helpers import make_pool


@pytest.mark.parametrize("name", ["least-connections", "wlc", "lc"])
def test_least_connections_picks_the_least_loaded(name: str) -> None:
    pool = make_pool(name, [1, 1, 1])
    a, b, c = pool
    a.counters.active, b.counters.active, c.counters.active = 5, 2, 7
    assert {pool.pick() for _ in range(10)} == {b}
    assert pool.pick(avoid={b}) is a


def test_weighted_least_connections_divides_by_weight_and_lc_does_not() -> None:
    for name, expected in (("least-connections", 1), ("wlc", 1), ("lc", 0)):
        pool = make_pool(name, [1, 4])
        insts = list(pool)
        insts[0].counters.active, insts[1].counters.active = 2, 3  # 2/1 > 3/4
        assert pool.pick() is insts[expected], name


def test_ties_are_broken_round_robin_so_equal_loads_spread() -> None:
    pool = make_pool("least-connections", [1, 1, 1, 1])
    assert len({pool.pick() for _ in range(4)}) == 4


@pytest.mark.parametrize("name", ["least-connections", "p2c"])
def test_loads_follow_weights_when_requests_pile_up(name: str) -> None:
    # Requests that never finish: every instance ends with load proportional to its weight.
    pool = make_pool(name, [1, 2, 5])
    for _ in range(800):
        chosen = pool.pick()
        assert chosen is not None
        chosen.counters.active += 1
    for inst in pool:
        assert abs(inst.counters.active / 800 - inst.weight / 8) < 0.02


@pytest.mark.parametrize("name", ["least-connections", "p2c"])
def test_a_slow_instance_gets_less_work(name: str) -> None:
    # Each instance finishes requests at its own pace; the slow one piles up and is avoided.
    rng = random.Random(7)
    pool = make_pool(name, [1, 1, 1])
    slow = next(iter(pool))
    finish = {inst: (0.2 if inst is slow else 0.8) for inst in pool}
    served: Counter[object] = Counter()
    for _ in range(6000):
        chosen = pool.pick()
        assert chosen is not None
        chosen.counters.active += 1
        served[chosen] += 1
        for inst in pool:
            if inst.counters.active and rng.random() < finish[inst]:
                inst.counters.active -= 1
    assert served[slow] < 0.25 * 6000
    assert all(served[inst] > 0.3 * 6000 for inst in pool if inst is not slow)


def test_p2c_never_picks_the_most_loaded_of_several() -> None:
    pool = make_pool("p2c", [1] * 6)
    insts = list(pool)
    for i, inst in enumerate(insts):
        inst.counters.active = 3 if i else 40
    picks = {pool.pick() for _ in range(500)}
    assert insts[0] not in picks and len(picks) == 5


def test_p2c_of_two_always_takes_the_less_loaded() -> None:
    sched = PowerOfTwoChoices(random.Random(1))
    pool = make_pool("p2c", [1, 3])
    a, b = pool
    sched.update([a, b])
    a.counters.active, b.counters.active = 1, 9  # 1/1 < 9/3
    assert {sched.pick() for _ in range(100)} == {a}
    assert sched.pick(avoid={a}) is b
