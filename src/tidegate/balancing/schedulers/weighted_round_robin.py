"""nginx's smooth weighted round-robin: shares follow the weights, without bursts.

Each pick adds every instance's weight to its `current`, takes the instance with the largest
`current` and subtracts the total weight from it. For weights 5, 1, 1 that gives
a a b a c a a, where a naive WRR gives a a a a a b c. After sum(weights) picks every `current`
is back to zero, so the sequence is periodic: `update` computes one period and `pick` walks it
in O(1). Effective weights (slow-start ramps) are quantised to 1/32 of a weight unit for this.

When a period would be too costly to compute (many instances times a large total weight) the
scheduler runs nginx's loop live instead, O(n) per pick, with the exact float weights. A retry
that must avoid the precomputed pick also takes nginx's loop, over the instances not avoided, so
retries spread by weight too.
"""

from __future__ import annotations

from collections.abc import Collection, Sequence
from math import gcd

from tidegate.balancing.instance import Instance
from tidegate.balancing.scheduler import register
from tidegate.balancing.schedulers.round_robin import next_position

# Sub-unit resolution of a ramping instance's weight.
RAMP_STEPS = 32
# Work allowed for precomputing one period (instances * period length).
PRECOMPUTE_BUDGET = 1_000_000  # about 50 ms of Python, only when something changes


def smooth_sequence(weights: Sequence[int]) -> list[int]:
    """One period of nginx's smooth WRR over integer weights, as indices into `weights`."""
    total = sum(weights)
    current = [0] * len(weights)
    seq: list[int] = []
    for _ in range(total):
        best = 0
        for i, w in enumerate(weights):
            current[i] += w
            if current[i] > current[best]:
                best = i
        current[best] -= total
        seq.append(best)
    return seq


def _integer_weights(instances: Sequence[Instance]) -> list[int]:
    if all(i.ramp >= 1.0 for i in instances):
        ints = [i.weight for i in instances]
    else:
        ints = [max(1, round(i.effective_weight * RAMP_STEPS)) for i in instances]
    g = 0
    for w in ints:
        g = gcd(g, w)
    return [w // g for w in ints]


class SmoothWeightedRoundRobin:
    def __init__(self) -> None:
        self._instances: list[Instance] = []
        self._seq: list[Instance] = []  # one precomputed period, when affordable
        self._next = 0
        # nginx's live state: the whole scheduler when the period is too costly, and otherwise
        # the choice among the others when the precomputed pick is to be avoided (a retry).
        self._weights: list[float] = []
        self._current: list[float] = []

    @property
    def precomputed(self) -> bool:
        return bool(self._seq)

    def update(self, instances: Sequence[Instance]) -> None:
        coming = self._seq[self._next] if self._seq else None
        self._instances = list(instances)
        self._weights = [i.effective_weight for i in instances]
        self._current = [0.0] * len(instances)
        self._seq = []
        if not instances:
            self._next = 0
            return
        ints = _integer_weights(instances)
        if len(ints) * sum(ints) <= PRECOMPUTE_BUDGET:
            self._seq = [instances[i] for i in smooth_sequence(ints)]
            # Resume near the same offset, with the instance whose turn it was: frequent
            # rebuilds (ramps) must not send every first pick to the heaviest instance.
            self._next = next_position(self._seq, coming, self._next)

    def pick(self, key: bytes | None = None, avoid: Collection[Instance] = ()) -> Instance | None:
        seq = self._seq
        if seq:
            pos = self._next
            self._next = pos + 1 if pos + 1 < len(seq) else 0
            inst = seq[pos]
            if not avoid or inst not in avoid:
                return inst
        elif not self._instances:
            return None
        return self._pick_live(avoid)

    def _pick_live(self, avoid: Collection[Instance]) -> Instance:
        instances, weights, current = self._instances, self._weights, self._current
        best = -1
        total = 0.0
        for i, inst in enumerate(instances):
            if avoid and inst in avoid:
                continue
            current[i] += weights[i]
            total += weights[i]
            if best < 0 or current[i] > current[best]:
                best = i
        if best < 0:  # everything avoided: any eligible one will do
            return self._pick_live(())
        current[best] -= total
        return instances[best]


# Registered by call, not as a decorator: a decorated class cannot compile to a native one.
register("weighted-round-robin")(SmoothWeightedRoundRobin)
register("wrr")(SmoothWeightedRoundRobin)
