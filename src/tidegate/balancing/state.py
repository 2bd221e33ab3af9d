"""Instance states, one machine for every layer (docs/architecture.md, "Instance states").

Theory of operation: only `up` and `slow-start` instances receive new work. `draining` takes no
new work while in-flight work finishes. `down` is set by health checks or outlier ejection;
`maint` only by an operator, and only an operator takes it out again. An instance leaves `down`
through `slow-start` when the pool has a slow-start period (else straight to `up`).
The full transition table, with causes, lives in `transitions.py`.
"""

from __future__ import annotations

from enum import StrEnum


class State(StrEnum):
    UP = "up"
    SLOW_START = "slow-start"
    DRAINING = "draining"
    DOWN = "down"
    MAINT = "maint"

    @property
    def takes_new_work(self) -> bool:
        return self in (State.UP, State.SLOW_START)
