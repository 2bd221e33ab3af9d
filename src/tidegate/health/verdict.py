"""Which state the health layer moves an instance to, from what it knows of it.

Theory of operation: an instance is held `down` while its active checks say unhealthy or it is
ejected; once neither holds, it leaves `down` for `slow-start` (when the pool ramps readmitted
instances) or `up`. The health layer never touches `maint` (only an operator leaves it) nor a
`draining` an operator asked for. A `draining` set by anything else (the gateway, on an
instance's drain signal) does go `down` when the instance dies, so that it comes back through
the checks once restarted.

| state       | unhealthy or ejected     | healthy and not ejected          |
| ----------- | ------------------------ | -------------------------------- |
| up          | down                     | (stays)                          |
| slow-start  | down                     | (stays; the ramp's end: up)      |
| down        | (stays)                  | slow-start, or up without a ramp |
| draining    | down, unless operator's  | (stays)                          |
| maint       | (stays)                  | (stays)                          |
"""

from __future__ import annotations

from tidegate.balancing.state import State

OPERATOR = "operator"  # causes of operator-set states start with this word
RAMP_FLOOR = 0.05  # the weight share a readmitted instance starts with in slow-start


def next_move(state: State, cause: str, healthy: bool, ejected: bool, ramps: bool) -> State | None:
    held_down = not healthy or ejected
    if state is State.MAINT:
        return None
    if state is State.DRAINING:
        return State.DOWN if held_down and not cause.startswith(OPERATOR) else None
    if state is State.DOWN:
        if held_down:
            return None
        return State.SLOW_START if ramps else State.UP
    return State.DOWN if held_down else None


def ramp_at(elapsed: float, period: float) -> float:
    """The share of its weight an instance gets `elapsed` seconds into a slow-start of `period`."""
    if period <= 0 or elapsed >= period:
        return 1.0
    return max(RAMP_FLOOR, elapsed / period)
