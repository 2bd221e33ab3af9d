"""The supervisor's per-instance table, every pair of state and event."""

from __future__ import annotations

import itertools

import pytest

from tidegate.instance.child_state import (
    TRANSITIONS,
    Action,
    ChildEvent,
    ChildState,
    crash_delay,
    transition,
)

S, E, A = ChildState, ChildEvent, Action


@pytest.mark.parametrize(("state", "event"), list(itertools.product(ChildState, ChildEvent)))
def test_every_pair_is_defined_or_ignored(state: ChildState, event: ChildEvent) -> None:
    new, action = transition(state, event)
    if (state, event) not in TRANSITIONS:
        assert (new, action) == (state, A.NONE)
    # Once the supervisor stops, nothing is ever started again.
    if state in (S.STOPPING, S.STOPPED) or event is E.STOP:
        assert action is not A.SPAWN
        assert new in (S.STOPPING, S.STOPPED)


def test_an_unasked_exit_is_a_crash_and_a_restart_is_not() -> None:
    assert transition(S.RUNNING, E.EXITED) == (S.BACKOFF, A.WAIT_BACKOFF)
    assert transition(S.STARTING, E.EXITED) == (S.BACKOFF, A.WAIT_BACKOFF)
    state, action = transition(S.RUNNING, E.RESTART)
    assert (state, action) == (S.EXITING, A.TERMINATE)
    assert transition(state, E.EXITED) == (S.STARTING, A.SPAWN)
    assert transition(S.STARTING, E.LISTENING) == (S.RUNNING, A.NONE)


def test_a_restart_during_backoff_starts_at_once_and_a_second_restart_is_one() -> None:
    assert transition(S.BACKOFF, E.RESTART) == (S.STARTING, A.SPAWN)
    assert transition(S.EXITING, E.RESTART) == (S.EXITING, A.NONE)


def test_stop_terminates_a_live_process_once() -> None:
    assert transition(S.RUNNING, E.STOP) == (S.STOPPING, A.TERMINATE)
    assert transition(S.EXITING, E.STOP) == (S.STOPPING, A.NONE)  # SIGTERM already sent
    assert transition(S.BACKOFF, E.STOP) == (S.STOPPED, A.NONE)  # no process to stop
    assert transition(S.STOPPING, E.EXITED) == (S.STOPPED, A.NONE)


def test_crash_delay_doubles_up_to_a_cap() -> None:
    assert crash_delay(0) == 0.0
    assert [crash_delay(n) for n in range(1, 5)] == [0.1, 0.2, 0.4, 0.8]
    assert crash_delay(10) == 5.0
    assert crash_delay(10_000) == 5.0
