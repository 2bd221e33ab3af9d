"""Which addresses go into one DNS answer: weighted sampling without replacement.

Theory of operation: a record asks for `k` addresses out of the pool's eligible ones. They are
drawn one after another, each with probability proportional to its weight among those not drawn
yet, and the answer lists them in the order drawn. That order is the rotation: most clients use
the first address of an answer, and the first position follows the weights exactly, while every
response carries a fresh order (classic DNS round-robin rotates a fixed list instead, which gives
no weights). A pool of a few dozen addresses makes the linear scan cheaper than any index.

One address (`answers = 1`, the common case) is a binary search in the running sums of the weights,
which the pool's candidates keep between changes: `weighted_pick` gives what `weighted_sample`
gives for k = 1 and the same draw.

Pure: the randomness comes in as `draw(total)`, a number uniform in [0, total), so the tests can
walk every possible sequence of draws and compare the result with the exact distribution.
"""

from __future__ import annotations

from bisect import bisect_left, bisect_right
from collections.abc import Callable, Sequence

Draw = Callable[[float], float]


def weighted_sample(weights: Sequence[float], k: int, draw: Draw) -> list[int]:
    """Indices of up to `k` distinct entries with weight > 0, in the order drawn."""
    remaining = [i for i, w in enumerate(weights) if w > 0]
    out: list[int] = []
    while remaining and len(out) < k:
        # Re-summing (rather than subtracting) keeps float error from piling up across draws.
        total = sum(weights[i] for i in remaining)
        x = draw(total)
        acc = 0.0
        pos = len(remaining) - 1  # float rounding may leave x >= the last sum: take the last
        for p, i in enumerate(remaining):
            acc += weights[i]
            if x < acc:
                pos = p
                break
        out.append(remaining.pop(pos))
    return out


def running_sums(weights: Sequence[float]) -> tuple[float, ...]:
    """The sums of the weights up to each entry, those <= 0 counted as 0 (never drawn)."""
    out: list[float] = []
    acc = 0.0
    for w in weights:
        if w > 0:
            acc += w
        out.append(acc)
    return tuple(out)


def weighted_pick(sums: Sequence[float], draw: Draw) -> int:
    """The index `weighted_sample(weights, 1, draw)` gives, from `running_sums(weights)`; -1 when no
    weight is above 0."""
    if not sums:
        return -1
    total = sums[-1]
    if total <= 0:
        return -1
    return index_at(sums, draw(total))


def index_at(sums: Sequence[float], x: float) -> int:
    """`weighted_pick`'s answer for the draw x in [0, sums[-1]), sums[-1] > 0."""
    i = bisect_right(sums, x)  # the first entry whose sum passes x: x < acc in weighted_sample
    if i == len(sums):  # float rounding left x >= the total: the last entry with a weight
        i = bisect_left(sums, sums[-1])
    return i
