"""Least connections: the instance with the fewest in-flight requests per unit of weight.

Loads change on every request without the scheduler hearing of it, so `pick` has to look at
every instance: O(n), with everything else (weights, their inverses, the counters objects)
prepared in `update`. Equal loads are broken by smooth weighted round-robin among the tied
instances, as nginx's `least_conn` does, so an idle pool still spreads by weight instead of
sending everything to the first instance.

IPVS names: `wlc` ranks by (active * 256 + inactive) / weight and `lc` by active * 256 + inactive.
tidegate counts no inactive (TIME_WAIT) connections, so with inactive = 0 `wlc` is exactly the
weighted form and `lc` the unweighted one.
"""

from __future__ import annotations

from collections.abc import Collection, Sequence

from tidegate.balancing.instance import Instance
from tidegate.balancing.scheduler import register
from tidegate.observe.counters import Counters


class LeastConnections:
    def __init__(self, weighted: bool = True) -> None:
        self._weighted = weighted
        self._instances: list[Instance] = []
        self._counters: list[Counters] = []
        self._weights: list[float] = []
        self._inverse: list[float] = []
        self._current: list[float] = []

    def update(self, instances: Sequence[Instance]) -> None:
        self._instances = list(instances)
        self._counters = [i.counters for i in instances]
        if self._weighted:
            self._weights = [i.effective_weight for i in instances]
        else:
            self._weights = [1.0] * len(instances)
        self._inverse = [1.0 / max(w, 1e-9) for w in self._weights]
        self._current = [0.0] * len(instances)

    def pick(self, key: bytes | None = None, avoid: Collection[Instance] = ()) -> Instance | None:
        instances, counters, inverse = self._instances, self._counters, self._inverse
        n = len(instances)
        if n == 0:
            return None
        least = float("inf")
        found = False
        for i in range(n):
            if avoid and instances[i] in avoid:
                continue
            load = counters[i].active * inverse[i]
            if not found or load < least:
                least = load
                found = True
        if not found:  # everything avoided: any eligible one will do
            return self.pick(key)
        weights, current = self._weights, self._current
        best = -1
        total = 0.0
        for i in range(n):
            if (avoid and instances[i] in avoid) or counters[i].active * inverse[i] != least:
                continue
            current[i] += weights[i]
            total += weights[i]
            if best < 0 or current[i] > current[best]:
                best = i
        current[best] -= total
        return instances[best]


@register("least-connections")
@register("wlc")
def weighted_least_connections() -> LeastConnections:
    return LeastConnections(weighted=True)


@register("lc")
def least_connections() -> LeastConnections:
    return LeastConnections(weighted=False)
