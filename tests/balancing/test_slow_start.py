"""Slow start: the weight ramps linearly from the floor to full, driven by a fake clock."""

from __future__ import annotations

from collections import Counter

import pytest
from hypothesis import given
from hypothesis import strategies as st

from tidegate.balancing import Pool, State
from tidegate.balancing.slow_start import ramp_factor
from tidegate.balancing.transitions import Event
from tidegate.testing.clock import FakeClock


def pool_with(slow_start: float, clock: FakeClock, scheduler: str = "weighted-round-robin") -> Pool:
    pool = Pool("web", scheduler, slow_start=slow_start, clock=clock)
    pool.add("10.0.0.1:80", "10.0.0.1", 80, 4)
    pool.add("10.0.0.2:80", "10.0.0.2", 80, 4)
    return pool


def test_ramp_factor_is_linear_between_the_floor_and_one() -> None:
    assert ramp_factor(0.0, 0.0, 10.0) == 0.1
    assert ramp_factor(5.0, 0.0, 10.0) == 0.5
    assert ramp_factor(12.0, 2.0, 10.0) == 1.0
    assert ramp_factor(99.0, 2.0, 10.0) == 1.0
    assert ramp_factor(1.0, 0.0, 10.0, min_factor=0.2) == 0.2
    assert ramp_factor(0.0, 0.0, 0.0) == 1.0  # no slow start


@given(
    since=st.floats(0, 1e6),
    period=st.floats(0.001, 3600),
    a=st.floats(0, 1e4),
    b=st.floats(0, 1e4),
    floor=st.floats(0, 1),
)
def test_ramp_factor_is_bounded_and_never_decreases(
    since: float, period: float, a: float, b: float, floor: float
) -> None:
    early, late = sorted((since + a, since + b))
    fa, fb = ramp_factor(early, since, period, floor), ramp_factor(late, since, period, floor)
    assert floor <= fa <= fb <= 1.0


def test_readmitted_instance_ramps_then_goes_up() -> None:
    clock = FakeClock(1000.0)
    pool = pool_with(10.0, clock)
    inst, _other = pool
    pool.apply(inst, Event.HEALTH_FAILED, "health: refused")
    clock.advance(30)
    assert pool.apply(inst, Event.HEALTH_PASSED, "health: 200") is State.SLOW_START
    assert inst.ramp == pytest.approx(0.1) and inst.effective_weight == pytest.approx(0.4)
    seen = []
    while pool.tick(clock()):
        seen.append(inst.ramp)
        clock.advance(1.0)
    assert seen == pytest.approx([0.1, 0.1, 0.2, 0.3, 0.4, 0.5, 0.6, 0.7, 0.8, 0.9])
    assert inst.state is State.UP and inst.ramp == 1.0
    assert clock() == 1040.0


def test_the_ramp_shows_in_the_share_of_picks() -> None:
    clock = FakeClock()
    pool = pool_with(10.0, clock)
    inst, _other = pool
    pool.apply(inst, Event.EJECTED, "ejected")
    pool.apply(inst, Event.EJECTION_EXPIRED, "ejection expired")
    shares = []
    for _ in range(5):
        clock.advance(2.0)
        pool.tick(clock())
        picks = Counter(pool.pick() for _ in range(1000))
        shares.append(picks[inst] / 1000)
    # ramp 0.2, 0.4, ... 0.8 against a full instance of the same weight, then up (0.5)
    assert shares == pytest.approx([0.2 / 1.2, 0.4 / 1.4, 0.6 / 1.6, 0.8 / 1.8, 0.5], abs=0.01)
    assert inst.state is State.UP


def test_without_a_slow_start_period_readmission_is_straight_to_up() -> None:
    clock = FakeClock()
    pool = pool_with(0.0, clock)
    inst, _ = pool
    pool.apply(inst, Event.OPERATOR_MAINT, "operator: maint")
    assert pool.apply(inst, Event.OPERATOR_ENABLE, "operator: enable") is State.UP
    assert inst.ramp == 1.0 and pool.tick(clock()) == 0


def test_a_ramp_interrupted_by_a_failure_starts_again_from_the_floor() -> None:
    clock = FakeClock()
    pool = pool_with(10.0, clock)
    inst, _ = pool
    pool.set_state(inst, State.SLOW_START, "health")
    clock.advance(6)
    pool.tick(clock())
    assert inst.ramp == pytest.approx(0.6)
    pool.apply(inst, Event.HEALTH_FAILED, "health: timeout")
    assert pool.tick(clock()) == 0 and pool.ramping() == {}
    clock.advance(1)
    pool.apply(inst, Event.HEALTH_PASSED, "health: 200")
    assert inst.ramp == pytest.approx(0.1) and pool.ramping() == {inst: clock()}


def test_slow_start_set_behind_the_pools_back_still_finishes() -> None:
    # A state put directly (or a slow_start period removed by a reload) must not ramp forever.
    clock = FakeClock()
    pool = pool_with(10.0, clock)
    inst, _ = pool
    pool.set_state(inst, State.SLOW_START, "health", now=clock())
    pool.slow_start = 0.0
    assert pool.tick(clock()) == 0
    assert inst.state is State.UP


def test_fake_clock_is_monotonic() -> None:
    clock = FakeClock(5.0)
    assert clock() == clock.now == clock.monotonic() == 5.0
    assert clock.advance(2.5) == 7.5
    with pytest.raises(ValueError):
        clock.advance(-1)
    with pytest.raises(ValueError):
        clock.set(1.0)
