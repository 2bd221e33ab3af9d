"""One instance of the user's server program, as every scheduler and data plane sees it."""

from __future__ import annotations

from tidegate.balancing.state import State
from tidegate.observe.counters import Counters


class Instance:
    """An address with a weight, a state and its figures.

    Identity is the object: schedulers may keep instances in sets and dicts. `address` is the
    operator's name for it ("127.0.0.1:9001"); `host`/`port` are what data planes connect to.
    State and weight changes go through the owning pool so that its scheduler is rebuilt.
    """

    __slots__ = ("address", "counters", "host", "meta", "port", "ramp", "state", "weight")

    def __init__(self, address: str, host: str, port: int, weight: int = 1) -> None:
        self.address = address
        self.host = host
        self.port = port
        self.weight = weight
        self.state = State.UP
        # Slow start: a factor in (0, 1] applied to the weight while ramping up.
        self.ramp = 1.0
        self.counters = Counters()
        # Free-form facts registered with the instance, e.g. {"supervisor": URL} from `tidegate serve`.
        self.meta: dict[str, str] = {}

    @property
    def effective_weight(self) -> float:
        if not self.state.takes_new_work:
            return 0.0
        return self.weight * self.ramp

    @property
    def available(self) -> bool:
        return self.state.takes_new_work and self.weight > 0

    def __repr__(self) -> str:
        return f"Instance({self.address!r}, weight={self.weight}, state={self.state.value})"
