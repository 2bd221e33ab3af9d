"""Maglev hashing (Eisenbud et al., NSDI 2016): a lookup table filled from per-instance
permutations, so a key costs one hash and one index.

Each instance has a permutation of the M table slots, `offset + j·skip (mod M)`, with offset and
skip from two independent hashes of its address (M prime, so every skip walks every slot). The
instances take turns claiming the next free slot of their permutation until the table is full;
an instance takes `weight` turns per round (weights reduced by their gcd), as IPVS `mh` does, so
its share of slots follows its weight. With M ≫ 100·N every share is within 1% of its target, and
when an instance leaves, mostly only its own slots change hands.

Instances fill in address order and the table follows configured weights (not slow-start ramps),
so every process with the same instances builds the same table. Without a key the pick is
round-robin; `avoid` walks on to the following slots.
"""

from __future__ import annotations

from collections.abc import Sequence
from math import gcd

from tidegate.balancing.hashing import name_hash
from tidegate.balancing.instance import Instance
from tidegate.balancing.scheduler import register
from tidegate.balancing.schedulers.lookup_table import LookupTable

TABLE_SIZE = 65537  # the paper's; IPVS defaults to 4093


def is_prime(n: int) -> bool:
    if n < 2:
        return False
    f = 2
    while f * f <= n:
        if n % f == 0:
            return False
        f += 1
    return True


def maglev_table(addresses: Sequence[str], weights: Sequence[int], size: int) -> list[int]:
    """The lookup table: for each slot, the index (into `addresses`) of its owner."""
    n = len(addresses)
    g = 0
    for w in weights:
        g = gcd(g, w)
    turns = [w // g for w in weights]
    if sum(turns) > size // 2:  # keep every instance in the table, and rounds many
        scale = (size // 2) / sum(turns)
        turns = [max(1, int(t * scale)) for t in turns]
    position = [name_hash(a, b"maglev-offset") % size for a in addresses]
    skips = [name_hash(a, b"maglev-skip") % (size - 1) + 1 for a in addresses]
    table = [-1] * size
    filled = 0
    while True:
        for i in range(n):
            slot, skip = position[i], skips[i]
            for _ in range(turns[i]):
                while table[slot] >= 0:
                    slot += skip
                    if slot >= size:
                        slot -= size
                table[slot] = i
                filled += 1
                if filled == size:
                    return table
            position[i] = slot


class Maglev(LookupTable):
    def __init__(self, table_size: int = TABLE_SIZE) -> None:
        if not is_prime(table_size):
            raise ValueError(f"maglev table size must be prime, not {table_size}")
        super().__init__()
        self._size = table_size

    def owners(self, ordered: Sequence[Instance]) -> list[int]:
        return maglev_table([i.address for i in ordered], [i.weight for i in ordered], self._size)


register("maglev")(Maglev)
register("mh")(Maglev)
