"""Consistent hashing on a ring of virtual nodes (Karger et al.; ketama's layout).

Each instance owns points on a 64-bit ring, `VNODES_PER_WEIGHT` per unit of weight; a key goes
to the owner of the first point at or after its hash. When one of N instances leaves, only the
keys on its points move (about 1/N of them) and every other key stays where it was.

The ring follows the configured weight, not the slow-start ramp: moving keys at every ramp step
would defeat the point of hashing (warm caches, sticky sessions). Without a key (nothing to hash)
the pick is round-robin. `avoid` walks on along the ring to the next other owner, which is also
where the key would go if the avoided instance left.
"""

from __future__ import annotations

from bisect import bisect_left
from collections.abc import Collection, Sequence

from tidegate.balancing.hashing import key_hash, name_points
from tidegate.balancing.instance import Instance
from tidegate.balancing.scheduler import register
from tidegate.balancing.schedulers.round_robin import RoundRobin

# An instance with V points gets its share within about 1/sqrt(V) (relative): ketama's 160 leave
# two instances up to 55/45; 1024 keep them within a few percent, for a ring of a few thousand
# points per instance built only when membership or weights change.
VNODES_PER_WEIGHT = 1024
# Ring size cap; beyond it every instance's share of points is scaled down alike (and keys move
# between survivors too when membership changes: keep weights small integers).
MAX_POINTS = 1 << 18


class ConsistentHash:
    def __init__(self, vnodes_per_weight: int = VNODES_PER_WEIGHT) -> None:
        self._vnodes = vnodes_per_weight
        self._signature: tuple[tuple[Instance, int], ...] = ()
        self._points: list[int] = []
        self._owners: list[Instance] = []
        self._fallback = RoundRobin()

    def update(self, instances: Sequence[Instance]) -> None:
        self._fallback.update(instances)
        signature = tuple((i, i.weight) for i in instances)
        if signature == self._signature:
            return  # a ramp or an unrelated change: the ring is unchanged
        self._signature = signature
        total = sum(i.weight for i in instances)
        per_weight = min(float(self._vnodes), MAX_POINTS / total) if total else 0.0
        ring: list[tuple[int, str, Instance]] = []
        for inst in instances:
            count = max(1, int(per_weight * inst.weight))
            ring.extend((p, inst.address, inst) for p in name_points(inst.address, count))
        # Address breaks the (astronomically rare) tie, so every process builds the same ring.
        ring.sort(key=lambda e: (e[0], e[1]))
        self._points = [p for p, _, _ in ring]
        self._owners = [inst for _, _, inst in ring]

    def pick(self, key: bytes | None = None, avoid: Collection[Instance] = ()) -> Instance | None:
        owners = self._owners
        if key is None or not owners:
            return self._fallback.pick(key, avoid)
        i = bisect_left(self._points, key_hash(key))
        n = len(owners)
        if i == n:
            i = 0
        inst = owners[i]
        if not avoid or inst not in avoid:
            return inst
        for step in range(1, n):
            other = owners[(i + step) % n]
            if other not in avoid:
                return other
        return inst


# Registered by call, not as a decorator: a decorated class cannot compile to a native one.
register("consistent-hash")(ConsistentHash)
