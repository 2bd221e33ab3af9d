"""The event the health layer sends, checked together with the state machine it feeds: after
the event, an instance takes work exactly when its witnesses allow it, except where the table
gives the operator (maint, an operator's draining) or a leaving instance (draining) the say."""

import itertools

import pytest

from tidegate.balancing.state import State
from tidegate.balancing.transitions import Event, next_state
from tidegate.health.verdict import event_for

CASES = list(itertools.product(State, (True, False), (True, False), (True, False), (True, False)))


@pytest.mark.parametrize(("state", "healthy", "ejected", "ended", "held"), CASES)
def test_event_and_outcome(state: State, healthy: bool, ejected: bool, ended: bool, held: bool) -> None:
    if held and state is not State.DRAINING:
        return
    if ended and ejected:
        return  # an ejection that just ended is not an ejection
    event = event_for(state, healthy, ejected, ended)
    after = state if event is None else (next_state(state, event, True, held) or state)
    should_serve = healthy and not ejected
    if state is State.MAINT or (state is State.DRAINING and held):
        assert after is state  # the operator's hold
    elif state is State.DRAINING:
        # leaving on its own: dead → down (to come back through the checks); an ejection or a
        # healthy result leaves it draining
        assert after is (State.DOWN if not healthy else State.DRAINING)
    elif should_serve:
        assert after.takes_new_work
        if state is State.DOWN:
            assert event is (Event.EJECTION_EXPIRED if ended else Event.HEALTH_PASSED)
            assert after is State.SLOW_START
    else:
        assert after is State.DOWN
        if state is not State.DOWN:
            assert event is (Event.HEALTH_FAILED if not healthy else Event.EJECTED)
    if state is State.DOWN and not should_serve:
        assert event is None  # down stays down without an event
