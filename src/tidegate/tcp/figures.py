"""The TCP layer's own figures, beside the shared per-instance counters.

`Instance.counters` already hold what every data plane counts (active, completed, bytes in and
out, failures, retries). What only a connection proxy has lives here, per listener: how many
connections it opened to each instance and at what rate, how many a drain cut short, and the
listener-wide totals. Pure: the caller passes the clock. The rate is observe's SlidingRate over
samples of `opened`: a connection only bumps the int, the listener's sweeper samples it each tick
(service.py), and so does every reading.
"""

from __future__ import annotations

from dataclasses import dataclass, field

from tidegate.observe.rate import SlidingRate


@dataclass(slots=True)
class InstanceFigures:
    """One listener's figures for one instance."""

    opened: int = 0  # connections relayed to the instance (connect succeeded)
    drain_cut: int = 0  # connections closed because the drain grace expired
    opening: SlidingRate = field(default_factory=SlidingRate)  # samples of `opened`

    def sample(self, now: float) -> None:
        self.opening.add(now, self.opened)

    def connections_per_second(self, now: float) -> float:
        self.opening.add(now, self.opened)  # a reading is a sample too: no stale rate when idle
        return self.opening.rate()


@dataclass(slots=True)
class ListenerFigures:
    accepted: int = 0  # client connections accepted
    unplaced: int = 0  # closed because no instance could be connected (none eligible, all failed)
    idle_closed: int = 0  # closed by the idle timeout
    drain_cut: int = 0  # closed because their instance's drain grace expired
    instances: dict[str, InstanceFigures] = field(default_factory=dict)

    def of(self, address: str) -> InstanceFigures:
        figs = self.instances.get(address)
        if figs is None:
            figs = self.instances[address] = InstanceFigures()
        return figs
