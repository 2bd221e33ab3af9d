"""A pool: the instances of one server program and the scheduler that spreads work over them."""

from __future__ import annotations

from collections.abc import Callable, Collection, Iterator
from dataclasses import dataclass

from tidegate.balancing.instance import Instance
from tidegate.balancing.scheduler import Scheduler, make_scheduler
from tidegate.balancing.state import State


@dataclass(frozen=True, slots=True)
class StateChange:
    pool: str
    address: str
    old: State
    new: State
    cause: str


Listener = Callable[[StateChange], None]


class Pool:
    """Owns its instances; every change of membership, state or weight rebuilds the scheduler.

    Data planes call `pick`; health checks, the admin API and the gateway's drain-signal handling
    call `set_state` / `set_weight` / `add` / `remove`. Listeners hear every state change with its
    cause (logging, metrics, registry sync).
    """

    def __init__(
        self,
        name: str,
        scheduler: str = "round-robin",
        hash_key: str = "source-ip",
        slow_start: float = 0.0,
    ) -> None:
        self.name = name
        self.scheduler_name = scheduler
        self.hash_key = hash_key
        self.slow_start = slow_start
        self._scheduler: Scheduler = make_scheduler(scheduler)
        self._instances: dict[str, Instance] = {}
        self._listeners: list[Listener] = []
        self.version = 0  # bumped on every change; cheap staleness check for observers
        self._stale = True  # the scheduler has not seen the latest change yet
        # Passive health: data planes report each attempt's outcome here; the health service
        # installs the outlier detector. None = nobody listens (no cost on the hot path).
        self.on_result: Callable[[Instance, bool], None] | None = None

    # --- membership -----------------------------------------------------------------------
    def add(self, address: str, host: str, port: int, weight: int = 1) -> Instance:
        if address in self._instances:
            raise ValueError(f"instance {address} already in pool {self.name}")
        inst = Instance(address, host, port, weight)
        self._instances[address] = inst
        self.changed()
        return inst

    def remove(self, address: str) -> Instance:
        inst = self._instances.pop(address)
        self.changed()
        return inst

    def get(self, address: str) -> Instance | None:
        return self._instances.get(address)

    def __iter__(self) -> Iterator[Instance]:
        return iter(list(self._instances.values()))

    def __len__(self) -> int:
        return len(self._instances)

    # --- state and weight -----------------------------------------------------------------
    def subscribe(self, listener: Listener) -> None:
        self._listeners.append(listener)

    def set_state(self, inst: Instance, new: State, cause: str) -> None:
        old = inst.state
        if old is new:
            return
        inst.state = new
        self.changed()
        change = StateChange(self.name, inst.address, old, new, cause)
        for listener in self._listeners:
            listener(change)

    def set_weight(self, inst: Instance, weight: int) -> None:
        if weight < 0:
            raise ValueError("weight must be >= 0")
        inst.weight = weight
        self.changed()

    def set_ramp(self, inst: Instance, ramp: float) -> None:
        inst.ramp = min(1.0, max(0.0, ramp))
        self.changed()

    def set_scheduler(self, name: str, hash_key: str | None = None) -> None:
        self._scheduler = make_scheduler(name)
        self.scheduler_name = name
        if hash_key is not None:
            self.hash_key = hash_key
        self.changed()

    def changed(self) -> None:
        # The scheduler is rebuilt at the next pick, once for any number of changes: adding a
        # hundred instances, or a tick moving every ramp, must not build a Maglev table each.
        self.version += 1
        self._stale = True

    # --- the hot path ---------------------------------------------------------------------
    def pick(self, key: bytes | None = None, avoid: Collection[Instance] = ()) -> Instance | None:
        if self._stale:
            self._stale = False
            self._scheduler.update([i for i in self._instances.values() if i.available])
        return self._scheduler.pick(key, avoid)

    def report(self, inst: Instance, ok: bool) -> None:
        """An attempt on `inst` succeeded or failed (connect error, reset, timeout, 5xx retried)."""
        if self.on_result is not None:
            self.on_result(inst, ok)

    def eligible(self) -> list[Instance]:
        return [i for i in self._instances.values() if i.available]
