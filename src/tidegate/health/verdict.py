"""Which event the health layer feeds the instance-state machine (balancing/transitions.py).

The health service owns two witnesses, the active checks (`healthy`) and the outlier detector
(`ejected`); the state machine owns what an event does in each state (it ignores health in
`maint` and in an operator's `draining`, and an ejection in any `draining`). This picks the
event that brings the instance's state in line with the witnesses:

| witnesses                 | state takes work | draining | down            | maint |
| ------------------------- | ---------------- | -------- | --------------- | ----- |
| checks failing            | health-failed    | health-failed | (none)     | health-failed (ignored) |
| ejected, checks passing   | ejected          | ejected (ignored) | (none) | ejected (ignored) |
| neither                   | (none)           | (none)   | health-passed, or ejection-expired when the ejection just ended | (none) |

`down` does not remember why it is down (rule 6 of the table): so `health-passed` is sent only
when the instance is not ejected, and `ejection-expired` only when its checks are not failing.
"""

from __future__ import annotations

from tidegate.balancing.state import State
from tidegate.balancing.transitions import Event


def event_for(state: State, healthy: bool, ejected: bool, ejection_ended: bool = False) -> Event | None:
    if not healthy:
        return None if state is State.DOWN else Event.HEALTH_FAILED
    if ejected:
        return None if state is State.DOWN else Event.EJECTED
    if state is State.DOWN:
        return Event.EJECTION_EXPIRED if ejection_ended else Event.HEALTH_PASSED
    return None
