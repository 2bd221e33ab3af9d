"""What source-hash and maglev share: a table of slots built from the instances in address order,
rebuilt only when membership or a weight changes, and a pick that is one hash and one index.

Without a key the pick is round-robin; `avoid` walks on to the following slots, like IPVS's
`sh-fallback`. Subclasses say only how slots are owned (`owners`).
"""

from __future__ import annotations

from collections.abc import Collection, Sequence

from tidegate.balancing.hashing import key_hash
from tidegate.balancing.instance import Instance
from tidegate.balancing.schedulers.round_robin import RoundRobin


class LookupTable:
    def __init__(self) -> None:
        self._signature: tuple[tuple[Instance, int], ...] = ()
        self._table: list[Instance] = []
        self._fallback = RoundRobin()

    def owners(self, ordered: Sequence[Instance]) -> list[int]:
        """For each slot, the index into `ordered` of the instance that owns it."""
        raise NotImplementedError

    def update(self, instances: Sequence[Instance]) -> None:
        self._fallback.update(instances)
        ordered = sorted(instances, key=lambda i: i.address)
        signature = tuple((i, i.weight) for i in ordered)
        if signature == self._signature:
            return
        self._signature = signature
        self._table = [ordered[o] for o in self.owners(ordered)] if ordered else []

    def pick(self, key: bytes | None = None, avoid: Collection[Instance] = ()) -> Instance | None:
        table = self._table
        if key is None or not table:
            return self._fallback.pick(key, avoid)
        size = len(table)
        slot = key_hash(key) % size
        inst = table[slot]
        if not avoid or inst not in avoid:
            return inst
        for step in range(1, size):
            other = table[(slot + step) % size]
            if other not in avoid:
                return other
        return inst
