"""Power of two choices: draw two instances at random, send to the less loaded of the two.

Nearly as good as least-connections at spreading load, without looking at every instance, and
without the herding a strict least-connections shows when its view of loads is stale. Draws are
weighted (a cumulative table and a bisection, O(log n)); load is in-flight requests per unit of
effective weight, so weights count both in who is drawn and in who wins.
"""

from __future__ import annotations

import random
from bisect import bisect_right
from collections.abc import Collection, Sequence
from itertools import accumulate

from tidegate.balancing.instance import Instance
from tidegate.balancing.scheduler import register
from tidegate.observe.counters import Counters


class PowerOfTwoChoices:
    def __init__(self, rng: random.Random | None = None) -> None:
        self._random = (rng or random.Random()).random
        self._instances: list[Instance] = []
        self._counters: list[Counters] = []
        self._inverse: list[float] = []
        self._cumulative: list[float] = []
        self._total = 0.0

    def update(self, instances: Sequence[Instance]) -> None:
        self._instances = list(instances)
        self._counters = [i.counters for i in instances]
        weights = [i.effective_weight for i in instances]
        self._inverse = [1.0 / max(w, 1e-9) for w in weights]
        self._cumulative = list(accumulate(weights))
        self._total = self._cumulative[-1] if weights else 0.0

    def _draw(self) -> int:
        i = bisect_right(self._cumulative, self._random() * self._total)
        return i if i < len(self._instances) else len(self._instances) - 1

    def pick(self, key: bytes | None = None, avoid: Collection[Instance] = ()) -> Instance | None:
        instances = self._instances
        n = len(instances)
        if n == 0:
            return None
        if n == 1:
            return instances[0]
        a = self._draw()
        b = self._draw()
        if b == a:
            b = (a + 1) % n
        if avoid:
            a_out, b_out = instances[a] in avoid, instances[b] in avoid
            if a_out and b_out:
                return self._least_outside(avoid)
            if a_out:
                return instances[b]
            if b_out:
                return instances[a]
        counters, inverse = self._counters, self._inverse
        if counters[b].active * inverse[b] < counters[a].active * inverse[a]:
            return instances[b]
        return instances[a]

    def _least_outside(self, avoid: Collection[Instance]) -> Instance:
        best: Instance | None = None
        least = 0.0
        for i, inst in enumerate(self._instances):
            if inst in avoid:
                continue
            load = self._counters[i].active * self._inverse[i]
            if best is None or load < least:
                best, least = inst, load
        return best if best is not None else self._instances[0]


# Registered by call, not as a decorator: a decorated class cannot compile to a native one.
register("p2c")(PowerOfTwoChoices)
