"""The instance-state machine as data: every (state, event) pair has a written outcome.

Theory of operation
-------------------
An instance takes new work only in `up` and `slow-start`. Four parties move it, by events:

- health checks (active: `fall` failures in a row, `rise` passes in a row) and outlier detection
  (passive: ejection, and its expiry) decide whether it *can* serve: they move it between `up`,
  `slow-start` and `down`;
- the instance itself, by answering with the drain signal, says it is leaving: `draining`;
- an operator (admin API, `tidegate ctl`, `tidegate upgrade`) drains, enables or sets `maint`;
- the slow-start ramp ends by itself: `slow-start` becomes `up`.

Rules the table encodes:

1. `maint` is the operator's hold: nothing but an operator `enable` takes an instance out of it,
   and health results are ignored meanwhile.
2. Readmission (`down` after `rise` passes or an ejection's expiry; `draining`, `maint` after an
   operator `enable`) goes through `slow-start` when the pool has a slow-start period, else
   straight to `up`. That is the `READMIT` target below.
3. `draining` comes in two kinds. After the instance's own drain signal it is the instance
   leaving: when the process exits its health checks fail and it goes `down`, and when a new
   process answers them it is readmitted (a restart comes back without an operator). After an
   operator's `drain` it is a hold (row `HELD_DRAINING`): health results do not move it, and
   only `enable` (or `maint`) ends it, which is what `tidegate upgrade` relies on. An operator
   `drain` of an instance already draining on its own signal turns it into a hold.
4. Outlier ejection does not touch `draining`: it gets no new work to protect, and an ejection's
   expiry must not put a leaving instance back into rotation.
5. Operator `enable` of a `down` instance changes nothing: enabling cannot make it healthy, and
   `down` holds no operator hold to lift. It is readmitted when its checks pass. Operator `drain`
   of a `down` instance makes it an operator's `draining`: it stays out, healthy or not, until
   `enable`.
6. `down` does not remember why it is down. The health service, which owns both the checker and
   the outlier detector, sends `ejection-expired` only when the active checks are not failing,
   and `health-passed` only when the instance is not ejected.

`None` in the table means "ignored in this state": the event is legal, and changes nothing.
"""

from __future__ import annotations

from enum import StrEnum
from typing import Final

from tidegate.balancing.state import State


class Event(StrEnum):
    HEALTH_FAILED = "health-failed"  # active check failed `fall` times in a row
    HEALTH_PASSED = "health-passed"  # active check passed `rise` times in a row
    EJECTED = "ejected"  # outlier detection: too many consecutive failures
    EJECTION_EXPIRED = "ejection-expired"
    DRAIN_SIGNAL = "drain-signal"  # the instance answered 503 + Tidegate-Draining: 1
    OPERATOR_DRAIN = "operator-drain"
    OPERATOR_ENABLE = "operator-enable"
    OPERATOR_MAINT = "operator-maint"
    SLOW_START_DONE = "slow-start-done"  # the ramp reached full weight


class _Readmit:
    """Target: `slow-start` if the pool has a slow-start period, else `up`."""

    def __repr__(self) -> str:
        return "READMIT"


READMIT: Final = _Readmit()
Target = State | _Readmit | None

_UP, _SLOW, _DRAINING, _DOWN, _MAINT = State.UP, State.SLOW_START, State.DRAINING, State.DOWN, State.MAINT
E = Event

TRANSITIONS: Final[dict[State, dict[Event, Target]]] = {
    State.UP: {
        E.HEALTH_FAILED: _DOWN,
        E.HEALTH_PASSED: None,
        E.EJECTED: _DOWN,
        E.EJECTION_EXPIRED: None,
        E.DRAIN_SIGNAL: _DRAINING,
        E.OPERATOR_DRAIN: _DRAINING,
        E.OPERATOR_ENABLE: None,
        E.OPERATOR_MAINT: _MAINT,
        E.SLOW_START_DONE: None,
    },
    State.SLOW_START: {
        E.HEALTH_FAILED: _DOWN,
        E.HEALTH_PASSED: None,
        E.EJECTED: _DOWN,
        E.EJECTION_EXPIRED: None,
        E.DRAIN_SIGNAL: _DRAINING,
        E.OPERATOR_DRAIN: _DRAINING,
        E.OPERATOR_ENABLE: None,  # already in rotation; the ramp goes on
        E.OPERATOR_MAINT: _MAINT,
        E.SLOW_START_DONE: _UP,
    },
    State.DRAINING: {  # on the instance's own drain signal
        E.HEALTH_FAILED: _DOWN,  # the process exited (rule 3)
        E.HEALTH_PASSED: None,
        E.EJECTED: None,  # rule 4
        E.EJECTION_EXPIRED: None,
        E.DRAIN_SIGNAL: None,
        E.OPERATOR_DRAIN: _DRAINING,  # now the operator's hold (rule 3)
        E.OPERATOR_ENABLE: READMIT,
        E.OPERATOR_MAINT: _MAINT,
        E.SLOW_START_DONE: None,
    },
    State.DOWN: {
        E.HEALTH_FAILED: None,
        E.HEALTH_PASSED: READMIT,
        E.EJECTED: None,
        E.EJECTION_EXPIRED: READMIT,  # rule 6
        E.DRAIN_SIGNAL: None,
        E.OPERATOR_DRAIN: _DRAINING,  # rule 5
        E.OPERATOR_ENABLE: None,  # rule 5
        E.OPERATOR_MAINT: _MAINT,
        E.SLOW_START_DONE: None,
    },
    State.MAINT: {
        E.HEALTH_FAILED: None,  # rule 1
        E.HEALTH_PASSED: None,
        E.EJECTED: None,
        E.EJECTION_EXPIRED: None,
        E.DRAIN_SIGNAL: None,
        E.OPERATOR_DRAIN: None,
        E.OPERATOR_ENABLE: READMIT,
        E.OPERATOR_MAINT: None,
        E.SLOW_START_DONE: None,
    },
}

# `draining` because an operator asked (rule 3).
HELD_DRAINING: Final[dict[Event, Target]] = {
    E.HEALTH_FAILED: None,
    E.HEALTH_PASSED: None,
    E.EJECTED: None,
    E.EJECTION_EXPIRED: None,
    E.DRAIN_SIGNAL: None,
    E.OPERATOR_DRAIN: None,
    E.OPERATOR_ENABLE: READMIT,
    E.OPERATOR_MAINT: _MAINT,
    E.SLOW_START_DONE: None,
}

# The events an operator causes: a `draining` they lead to is a hold.
OPERATOR_EVENTS: Final = frozenset({E.OPERATOR_DRAIN, E.OPERATOR_ENABLE, E.OPERATOR_MAINT})


def next_state(state: State, event: Event, slow_start: bool, held: bool = False) -> State | None:
    """The state `event` moves an instance in `state` to, or None when it is ignored there.

    `slow_start`: whether the pool has a slow-start period (readmission ramps, else goes `up`).
    `held`: whether a `draining` instance is draining because an operator asked (rule 3).
    A result equal to `state` (only `draining` on an operator's drain) means "the same state,
    now held".
    """
    row = HELD_DRAINING if held and state is State.DRAINING else TRANSITIONS[state]
    target = row[event]
    if isinstance(target, _Readmit):
        return State.SLOW_START if slow_start else State.UP
    return target
