"""The TCP layer's own figures, beside the shared per-instance counters.

`Instance.counters` already hold what every data plane counts (active, completed, bytes in and
out, failures, retries). What only a connection proxy has lives here, per listener: how many
connections it opened to each instance and at what rate, how many a drain cut short, and the
listener-wide totals. Pure: the caller passes the clock.
"""

from __future__ import annotations

from dataclasses import dataclass, field


class RateWindow:
    """Events per second over the last `seconds` complete seconds (one bucket per second).

    O(1) to record, O(seconds) to read; the current, incomplete second is left out so a reading
    does not dip at the start of every second.
    """

    __slots__ = ("_counts", "_seconds", "_stamps")

    def __init__(self, seconds: int = 10) -> None:
        if seconds < 1:
            raise ValueError("seconds must be >= 1")
        self._seconds = seconds
        self._counts = [0] * seconds
        self._stamps = [-1] * seconds

    def add(self, now: float, n: int = 1) -> None:
        second = int(now)
        i = second % self._seconds
        if self._stamps[i] != second:
            self._stamps[i] = second
            self._counts[i] = 0
        self._counts[i] += n

    def rate(self, now: float) -> float:
        second = int(now)
        oldest = second - self._seconds
        total = sum(c for c, t in zip(self._counts, self._stamps, strict=True) if oldest <= t < second)
        return total / self._seconds


@dataclass(slots=True)
class InstanceFigures:
    """One listener's figures for one instance."""

    opened: int = 0  # connections relayed to the instance (connect succeeded)
    drain_cut: int = 0  # connections closed because the drain grace expired
    opening: RateWindow = field(default_factory=RateWindow)


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
