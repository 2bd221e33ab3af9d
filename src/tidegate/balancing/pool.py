"""A pool: the instances of one server program and the scheduler that spreads work over them."""

from __future__ import annotations

import logging
import time
from collections.abc import Callable, Collection, Iterator
from dataclasses import dataclass

from tidegate.balancing.instance import Instance
from tidegate.balancing.scheduler import Scheduler, make_scheduler
from tidegate.balancing.slow_start import MIN_FACTOR, ramp_factor
from tidegate.balancing.state import State
from tidegate.balancing.transitions import OPERATOR_EVENTS, Event, next_state

log = logging.getLogger("tidegate.balancing")

# Causes of operator-made changes start with this word (admin API, ctl, upgrade). A `draining`
# set with such a cause is an operator hold: health results do not end it, only `enable` does.
OPERATOR = "operator"


@dataclass(frozen=True, slots=True)
class StateChange:
    pool: str
    address: str
    old: State
    new: State
    cause: str


Listener = Callable[[StateChange], None]


class Pool:
    """Owns its instances; any change of membership, state, weight or ramp rebuilds the
    scheduler (once, at the next pick, however many changes came in between).

    Data planes call `pick`; health checks, the admin API and the gateway's drain-signal handling
    call `apply` (an event, through the transition table) or `set_state` (a state, directly),
    `set_weight`, `add`, `remove`. Listeners hear every state change with its cause (logging,
    metrics, registry sync). Whoever drives slow start calls `tick(now)` now and then.

    `clock` stamps the start of slow-start ramps when no `now` is passed; tests give a
    `tidegate.testing.clock.FakeClock`.
    """

    def __init__(
        self,
        name: str,
        scheduler: str = "round-robin",
        hash_key: str = "source-ip",
        slow_start: float = 0.0,
        clock: Callable[[], float] = time.monotonic,
    ) -> None:
        self.name = name
        self.clock = clock
        self.slow_start_min = MIN_FACTOR
        # Instances in slow-start, with the time their ramp began.
        self._ramp_since: dict[Instance, float] = {}
        # Instances whose `draining` an operator asked for (see OPERATOR).
        self._held: set[Instance] = set()
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
        self._ramp_since.pop(inst, None)
        self._held.discard(inst)
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

    def set_state(
        self, inst: Instance, new: State, cause: str, *, held: bool | None = None, now: float | None = None
    ) -> None:
        """Put `inst` in `new` whatever its state (prefer `apply`, which follows the table).

        `held`: whether an operator asked for it (default: `cause` starts with "operator"); it
        matters for `draining`. `now`: the start of a slow-start ramp (default: `self.clock()`).
        """
        if held is None:
            held = cause.startswith(OPERATOR)
        if new is not State.DRAINING:
            self._held.discard(inst)
        elif held:
            self._held.add(inst)
        elif inst.state is not State.DRAINING:
            self._held.discard(inst)
        # (a drain signal on an operator's draining keeps the operator's hold)
        old = inst.state
        if old is new:
            return
        inst.state = new
        if new is State.SLOW_START:
            since = self.clock() if now is None else now
            self._ramp_since[inst] = since
            inst.ramp = ramp_factor(since, since, self.slow_start, self.slow_start_min)
        else:
            self._ramp_since.pop(inst, None)
            if new is State.UP:
                inst.ramp = 1.0
        self.changed()
        log.info("pool %s: %s %s -> %s (%s)", self.name, inst.address, old.value, new.value, cause)
        change = StateChange(self.name, inst.address, old, new, cause)
        for listener in self._listeners:
            listener(change)

    def apply(self, inst: Instance, event: Event, cause: str, *, now: float | None = None) -> State | None:
        """Feed `event` to the state machine (transitions.py); returns the new state, or None
        when the event changes nothing in the instance's state. The cause goes to the log and
        to listeners, e.g. "health: GET /healthz: 500" or "operator: drain"."""
        held = inst in self._held
        new = next_state(inst.state, event, self.slow_start > 0, held)
        if new is None:
            return None
        self.set_state(inst, new, cause, held=event in OPERATOR_EVENTS, now=now)
        return new

    def held(self, inst: Instance) -> bool:
        """Whether `inst` is draining because an operator asked (health results keep it there)."""
        return inst in self._held

    def tick(self, now: float) -> int:
        """Advance the slow-start ramps to `now`: ramps grow, and finished ones go `up` (event
        `slow-start-done`). Returns how many instances are still ramping. Call it every few
        hundred milliseconds while that is not 0; one scheduler rebuild covers all the ramps."""
        ramping = 0
        for inst, since in list(self._ramp_since.items()):
            if inst.state is not State.SLOW_START:  # set behind our back; forget it
                del self._ramp_since[inst]
                continue
            factor = ramp_factor(now, since, self.slow_start, self.slow_start_min)
            if factor >= 1.0:
                self.apply(inst, Event.SLOW_START_DONE, f"slow start done after {now - since:.1f}s", now=now)
                continue
            ramping += 1
            if factor != inst.ramp:
                inst.ramp = factor
                self.changed()
        return ramping

    def ramping(self) -> dict[Instance, float]:
        """Instances in slow-start, with the time their ramp began."""
        return dict(self._ramp_since)

    def set_weight(self, inst: Instance, weight: int) -> None:
        if weight < 0:
            raise ValueError("weight must be >= 0")
        inst.weight = weight
        self.changed()

    def set_ramp(self, inst: Instance, ramp: float) -> None:
        ramp = min(1.0, max(0.0, ramp))
        if ramp != inst.ramp:
            inst.ramp = ramp
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
