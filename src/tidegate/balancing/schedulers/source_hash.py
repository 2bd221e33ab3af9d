"""Source hashing as IPVS `sh` does it: 256 buckets, the instances laid out in turn, each
repeated `weight` times, and a key's hash picks the bucket.

Not consistent: when an instance leaves, most buckets change owner (use consistent-hash or
maglev when that matters). Two deliberate differences from IPVS: weights are reduced by their
gcd, and scaled down when they add up to more than 256, so every instance keeps at least one
bucket (IPVS drops the ones that do not fit; beyond 256 instances some must go without). Instances are laid out in address order so every
process agrees. Without a key the pick is round-robin; `avoid` walks on to the next buckets, like
IPVS's `sh-fallback`.
"""

from __future__ import annotations

from collections.abc import Sequence
from math import gcd

from tidegate.balancing.instance import Instance
from tidegate.balancing.scheduler import register
from tidegate.balancing.schedulers.lookup_table import LookupTable

BUCKETS = 256


def bucket_owners(weights: Sequence[int], buckets: int = BUCKETS) -> list[int]:
    """For each bucket, the index of its instance."""
    g = 0
    for w in weights:
        g = gcd(g, w)
    reps = [w // g for w in weights]
    if sum(reps) > buckets:
        scale = buckets / sum(reps)
        reps = [max(1, int(r * scale)) for r in reps]
    layout = [i for i, r in enumerate(reps) for _ in range(r)]
    return [layout[b % len(layout)] for b in range(buckets)]


@register("source-hash")
@register("sh")
class SourceHash(LookupTable):
    def owners(self, ordered: Sequence[Instance]) -> list[int]:
        return bucket_owners([i.weight for i in ordered])
