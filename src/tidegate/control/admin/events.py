"""What happened to the instances, for the dashboard: a bounded log of state changes and of
instances joining and leaving their pools, and since when each is in its state.

Pure (time is passed in). The admin service feeds it from the pools' state-change listeners
(balancing/pool.py calls them only when a state changes, never per request) and from its
once-a-second look at pool membership. Each event gets a `kind` from its cause, which names who
moved the instance (the causes are written in balancing/pool.py, health/service.py,
control/admin/operations.py and control/registry/sync.py).
"""

from __future__ import annotations

from collections import deque
from dataclasses import asdict, dataclass
from typing import Any, Final

DEFAULT_SIZE: Final = 1000

# The actor a rollout's calls of the admin API name (rollout/admin_client.py sends it).
ROLLOUT: Final = "rollout"


def kind_of(cause: str) -> str:
    """Who moved the instance: operator, rollout, health, outlier, instance (its own drain
    signal), slow-start, pool (joined or left), or other."""
    if cause.startswith("operator"):
        return ROLLOUT if f"({ROLLOUT})" in cause else "operator"
    if cause.startswith(("health", "healthy")):
        return "health"
    if cause.startswith(("ejected", "ejection")):
        return "outlier"
    if cause.startswith("drain signal"):
        return "instance"
    if cause.startswith("slow start"):
        return "slow-start"
    if cause in ("added", "removed"):
        return "pool"
    return "other"


@dataclass(frozen=True, slots=True)
class StateEvent:
    time: float
    pool: str
    address: str
    old: str | None  # None: it joined the pool
    new: str | None  # None: it left the pool
    cause: str
    kind: str


class EventLog:
    def __init__(self, size: int = DEFAULT_SIZE) -> None:
        self._events: deque[StateEvent] = deque(maxlen=size)
        self._since: dict[tuple[str, str], float] = {}
        self.recorded = 0  # ever, for a reader to tell whether it missed some

    def record(
        self, now: float, pool: str, address: str, old: str | None, new: str | None, cause: str
    ) -> StateEvent:
        event = StateEvent(now, pool, address, old, new, cause, kind_of(cause))
        self._events.append(event)
        self.recorded += 1
        if new is None:
            self._since.pop((pool, address), None)
        else:
            self._since[(pool, address)] = now
        return event

    def seen(self, now: float, pool: str, address: str) -> None:
        """`address` is in `pool`: its state started no later than `now` if nothing said when."""
        self._since.setdefault((pool, address), now)

    def since(self, pool: str, address: str) -> float | None:
        """When the instance entered its current state (or was first seen in it)."""
        return self._since.get((pool, address))

    def members(self) -> set[tuple[str, str]]:
        """The (pool, address) pairs the log knows to be in their pools."""
        return set(self._since)

    def recent(
        self, pool: str | None = None, address: str | None = None, limit: int = 100
    ) -> list[StateEvent]:
        """The newest `limit` events (of `pool`, of `address` in it), newest first."""
        out: list[StateEvent] = []
        for event in reversed(self._events):
            if (pool is None or event.pool == pool) and (address is None or event.address == address):
                out.append(event)
                if len(out) >= limit:
                    break
        return out


def event_json(event: StateEvent) -> dict[str, Any]:
    return asdict(event)
