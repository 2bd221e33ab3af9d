"""Random choice in proportion to effective weight: a cumulative table and a bisection."""

from __future__ import annotations

import random
from bisect import bisect_right
from collections.abc import Collection, Sequence
from itertools import accumulate

from tidegate.balancing.instance import Instance
from tidegate.balancing.scheduler import register

# Redraws before `avoid` falls back to a linear scan.
REDRAWS = 3


class WeightedRandom:
    def __init__(self, rng: random.Random | None = None) -> None:
        self._random = (rng or random.Random()).random
        self._instances: list[Instance] = []
        self._cumulative: list[float] = []
        self._total = 0.0

    def update(self, instances: Sequence[Instance]) -> None:
        self._instances = list(instances)
        self._cumulative = list(accumulate(i.effective_weight for i in instances))
        self._total = self._cumulative[-1] if instances else 0.0

    def _draw(self) -> Instance:
        i = bisect_right(self._cumulative, self._random() * self._total)
        return self._instances[i if i < len(self._instances) else -1]

    def pick(self, key: bytes | None = None, avoid: Collection[Instance] = ()) -> Instance | None:
        if not self._instances:
            return None
        inst = self._draw()
        if not avoid or inst not in avoid:
            return inst
        for _ in range(REDRAWS):
            other = self._draw()
            if other not in avoid:
                return other
        # The avoided instances hold most of the weight: scan from a random place.
        n = len(self._instances)
        start = int(self._random() * n)
        for step in range(n):
            other = self._instances[(start + step) % n]
            if other not in avoid:
                return other
        return inst


# Registered by call, not as a decorator: a decorated class cannot compile to a native one.
register("random")(WeightedRandom)
