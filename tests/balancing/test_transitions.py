"""The instance-state machine, exhaustively: every state x event x flag has a written outcome."""

from __future__ import annotations

import itertools
import logging

import pytest

from tidegate.balancing import State
from tidegate.balancing.pool import StateChange
from tidegate.balancing.transitions import HELD_DRAINING, TRANSITIONS, Event, next_state
from tidegate.testing.clock import FakeClock

from .helpers import make_pool

U, S, DR, DN, M = State.UP, State.SLOW_START, State.DRAINING, State.DOWN, State.MAINT
E = Event
R = "readmit"  # slow-start with a slow-start period, else up

# The whole table written out again, independently, as the specification: (state, held) rows,
# one column per event, in Event's order.
COLUMNS = (
    E.HEALTH_FAILED,
    E.HEALTH_PASSED,
    E.EJECTED,
    E.EJECTION_EXPIRED,
    E.DRAIN_SIGNAL,
    E.OPERATOR_DRAIN,
    E.OPERATOR_ENABLE,
    E.OPERATOR_MAINT,
    E.SLOW_START_DONE,
)
SPEC: dict[tuple[State, bool], tuple[object, ...]] = {
    #            fail  pass  eject expire signal drain  enable maint  ramp-done
    (U, False): (DN, None, DN, None, DR, DR, None, M, None),
    (S, False): (DN, None, DN, None, DR, DR, None, M, U),
    (DR, False): (DN, None, None, None, None, DR, R, M, None),
    (DR, True): (None, None, None, None, None, None, R, M, None),
    (DN, False): (None, R, None, R, None, DR, None, M, None),
    (M, False): (None, None, None, None, None, None, R, None, None),
}


def expected(state: State, held: bool, event: Event, slow_start: bool) -> State | None:
    row = SPEC[(state, held and state is DR)]
    outcome = row[COLUMNS.index(event)]
    if outcome == R:
        return S if slow_start else U
    assert outcome is None or isinstance(outcome, State)
    return outcome


def test_the_table_is_complete() -> None:
    assert set(COLUMNS) == set(Event)
    assert set(TRANSITIONS) == set(State)
    for row in [*TRANSITIONS.values(), HELD_DRAINING]:
        assert set(row) == set(Event)


@pytest.mark.parametrize(
    ("state", "event", "held", "slow_start"),
    list(itertools.product(State, Event, [False, True], [False, True])),
    ids=lambda v: str(v),
)
def test_every_state_and_event(state: State, event: Event, held: bool, slow_start: bool) -> None:
    assert next_state(state, event, slow_start, held) == expected(state, held, event, slow_start)


@pytest.mark.parametrize(
    ("state", "event", "held"),
    [(s, e, h) for s, e, h in itertools.product(State, Event, [False, True]) if h <= (s is DR)],
    ids=lambda v: str(v),
)
def test_pool_apply_follows_the_table(state: State, event: Event, held: bool) -> None:
    # Through the Pool, as the health service, the admin API and the gateway use it.
    clock = FakeClock(100.0)
    pool = make_pool("round-robin", [1, 1])
    pool.slow_start = 10.0
    pool.clock = clock
    inst, _other = pool
    pool.set_state(inst, state, "operator: setup" if held else "setup")
    assert pool.held(inst) is held
    changes: list[StateChange] = []
    pool.subscribe(changes.append)
    want = expected(state, held, event, slow_start=True)
    got = pool.apply(inst, event, cause=f"test {event}")
    assert got == want
    assert inst.state is (want or state)
    if want is None or want is state:
        assert changes == []
    else:
        assert changes == [StateChange(pool.name, inst.address, state, want, f"test {event}")]
    # Whether the instance takes new work shows at once in the scheduler.
    picks = {pool.pick() for _ in range(4)}
    assert (inst in picks) is inst.state.takes_new_work


def test_maint_is_left_only_by_an_operator_enable() -> None:
    pool = make_pool("round-robin", [1])
    (inst,) = pool
    pool.apply(inst, E.OPERATOR_MAINT, "operator: maint")
    for event in Event:
        if event is not E.OPERATOR_ENABLE:
            assert pool.apply(inst, event, f"{event}") is None
            assert inst.state is M
    assert pool.apply(inst, E.OPERATOR_ENABLE, "operator: enable") is U


def test_a_drained_instance_that_restarts_comes_back_by_itself() -> None:
    # The drain signal: the instance leaves, dies (checks fail), restarts (checks pass).
    pool = make_pool("round-robin", [1, 1])
    pool.slow_start = 5.0
    inst, _ = pool
    assert pool.apply(inst, E.DRAIN_SIGNAL, "drain signal") is DR
    assert pool.apply(inst, E.HEALTH_FAILED, "health: connection refused") is DN
    assert pool.apply(inst, E.HEALTH_PASSED, "health: 200") is S


def test_an_operator_drain_holds_whatever_the_health_checks_say() -> None:
    pool = make_pool("round-robin", [1, 1])
    inst, _ = pool
    pool.apply(inst, E.DRAIN_SIGNAL, "drain signal")
    assert pool.apply(inst, E.OPERATOR_DRAIN, "operator: drain") is DR and pool.held(inst)
    assert pool.apply(inst, E.HEALTH_FAILED, "health: refused") is None
    assert pool.apply(inst, E.DRAIN_SIGNAL, "drain signal") is None and pool.held(inst)
    assert pool.apply(inst, E.OPERATOR_ENABLE, "operator: enable") is U and not pool.held(inst)


def test_direct_set_state_with_an_operator_cause_is_a_hold_too() -> None:
    # The admin API sets states directly with causes "operator: ..."; the hold follows.
    pool = make_pool("round-robin", [1])
    (inst,) = pool
    pool.set_state(inst, DR, "operator: drain")
    assert pool.held(inst)
    assert pool.apply(inst, E.HEALTH_FAILED, "health") is None
    pool.set_state(inst, U, "operator: enable")
    assert not pool.held(inst)


def test_state_changes_are_logged_with_their_cause(caplog: pytest.LogCaptureFixture) -> None:
    pool = make_pool("round-robin", [1])
    (inst,) = pool
    with caplog.at_level(logging.INFO, logger="tidegate.balancing"):
        pool.apply(inst, E.EJECTED, "ejected after 5 consecutive failures")
        pool.apply(inst, E.EJECTED, "ignored: already down")
    assert [r.getMessage() for r in caplog.records] == [
        f"pool test: {inst.address} up -> down (ejected after 5 consecutive failures)"
    ]


def test_removed_instances_leave_no_bookkeeping() -> None:
    pool = make_pool("round-robin", [1, 1])
    pool.slow_start = 10.0
    a, b = pool
    pool.set_state(a, DR, "operator: drain")
    pool.set_state(b, S, "health")
    pool.remove(a.address)
    pool.remove(b.address)
    assert not pool.held(a) and pool.ramping() == {}
