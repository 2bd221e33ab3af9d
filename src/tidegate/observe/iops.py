"""IOPS per instance: completed requests per second, sampled from the live counters.

The meter is keyed by the Counters object itself (each instance owns exactly one), so this layer
needs nothing from the layers above it. Counters that stop being offered (their instance left
its pool) are forgotten at the next sample.
"""

from __future__ import annotations

from collections.abc import Iterable

from tidegate.observe.counters import Counters
from tidegate.observe.rate import SlidingRate

DEFAULT_WINDOW = 10.0


class IopsMeter:
    def __init__(self, window: float = DEFAULT_WINDOW, resolution: float = 0.5) -> None:
        self.window = window
        self.resolution = resolution
        # id() because Counters is an (unhashable) dataclass; the tuple keeps the object alive,
        # so its id cannot be reused while it is in here.
        self._rates: dict[int, tuple[Counters, SlidingRate]] = {}

    def sample(self, now: float, counters: Iterable[Counters]) -> None:
        seen: dict[int, tuple[Counters, SlidingRate]] = {}
        for c in counters:
            entry = self._rates.get(id(c))
            if entry is None:
                entry = (c, SlidingRate(self.window, self.resolution))
            entry[1].add(now, c.completed)
            seen[id(c)] = entry
        self._rates = seen

    def iops(self, counters: Counters) -> float:
        entry = self._rates.get(id(counters))
        return entry[1].rate() if entry is not None else 0.0
