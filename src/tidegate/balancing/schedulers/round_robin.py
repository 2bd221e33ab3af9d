"""Plain round-robin: each eligible instance in turn, weights ignored."""

from __future__ import annotations

from collections.abc import Collection, Sequence

from tidegate.balancing.instance import Instance
from tidegate.balancing.scheduler import register


@register("round-robin")
class RoundRobin:
    def __init__(self) -> None:
        self._ring: list[Instance] = []
        self._next = 0

    def update(self, instances: Sequence[Instance]) -> None:
        self._ring = list(instances)
        self._next = 0

    def pick(self, key: bytes | None = None, avoid: Collection[Instance] = ()) -> Instance | None:
        ring = self._ring
        n = len(ring)
        if n == 0:
            return None
        for _ in range(n):
            inst = ring[self._next % n]
            self._next = (self._next + 1) % n
            if inst not in avoid:
                return inst
        return ring[self._next % n]
