"""Plain round-robin: each eligible instance in turn, weights ignored (IPVS `rr`)."""

from __future__ import annotations

from collections.abc import Collection, Sequence

from tidegate.balancing.instance import Instance
from tidegate.balancing.scheduler import register


@register("round-robin")
@register("rr")
class RoundRobin:
    def __init__(self) -> None:
        self._ring: list[Instance] = []
        self._next = 0

    def update(self, instances: Sequence[Instance]) -> None:
        self._ring = list(instances)
        # Keep the cursor: rebuilding on every state or ramp change must not send the next
        # pick to the first instance each time.
        self._next = self._next % len(self._ring) if self._ring else 0

    def pick(self, key: bytes | None = None, avoid: Collection[Instance] = ()) -> Instance | None:
        ring = self._ring
        n = len(ring)
        if n == 0:
            return None
        start = self._next
        self._next = (start + 1) % n
        inst = ring[start]
        if not avoid or inst not in avoid:
            return inst
        for step in range(1, n):
            other = ring[(start + step) % n]
            if other not in avoid:
                return other
        return inst
