import itertools

import pytest

from tidegate.balancing.state import State
from tidegate.health.verdict import RAMP_FLOOR, next_move, ramp_at

CAUSES = ("operator: drain", "drain-signal", "health: http status 500", "")


@pytest.mark.parametrize(
    ("state", "cause", "healthy", "ejected", "ramps"),
    list(itertools.product(State, CAUSES, (True, False), (True, False), (True, False))),
)
def test_every_case(state: State, cause: str, healthy: bool, ejected: bool, ramps: bool) -> None:
    new = next_move(state, cause, healthy, ejected, ramps)
    held_down = ejected or not healthy
    if state is State.MAINT:
        assert new is None  # only an operator leaves maint
    elif state is State.DRAINING and cause.startswith("operator"):
        assert new is None  # an operator's drain is the operator's
    elif state is State.DRAINING:
        assert new is (State.DOWN if held_down else None)
    elif state is State.DOWN:
        assert new is (None if held_down else State.SLOW_START if ramps else State.UP)
    else:
        assert state.takes_new_work
        assert new is (State.DOWN if held_down else None)


def test_ramp_is_linear_from_a_floor_to_one() -> None:
    assert ramp_at(0.0, 10.0) == RAMP_FLOOR
    assert ramp_at(5.0, 10.0) == pytest.approx(0.5)
    assert ramp_at(9.99, 10.0) < 1.0
    assert ramp_at(10.0, 10.0) == 1.0
    assert ramp_at(3.0, 0.0) == 1.0
    values = [ramp_at(t / 10, 10.0) for t in range(0, 101)]
    assert values == sorted(values)
