"""Plain round-robin: each eligible instance in turn, weights ignored (IPVS `rr`)."""

from __future__ import annotations

from collections.abc import Collection, Sequence

from tidegate.balancing.instance import Instance
from tidegate.balancing.scheduler import register


class RoundRobin:
    def __init__(self) -> None:
        self._ring: list[Instance] = []
        self._next = 0

    def update(self, instances: Sequence[Instance]) -> None:
        # The turn stays with the instance that had it: rebuilding on every state or ramp
        # change must not send the next pick back to the first instance, nor skip the one after
        # an instance that just left (the retry after a drain signal goes there).
        coming = self._ring[self._next] if self._ring else None
        self._ring = list(instances)
        self._next = next_position(self._ring, coming, self._next)

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


def next_position(ring: Sequence[Instance], coming: Instance | None, old: int) -> int:
    """Where a rebuilt ring resumes: at `coming`'s first place at or after `old`, else at `old`."""
    n = len(ring)
    if n == 0:
        return 0
    old %= n
    if coming is not None:
        for step in range(n):
            if ring[(old + step) % n] is coming:
                return (old + step) % n
    return old


# Registered by call, not as a decorator: a decorated class cannot compile to a native one.
register("round-robin")(RoundRobin)
register("rr")(RoundRobin)
