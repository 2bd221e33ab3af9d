"""Which addresses go into one DNS answer: weighted sampling without replacement.

Theory of operation: a record asks for `k` addresses out of the pool's eligible ones. They are
drawn one after another, each with probability proportional to its weight among those not drawn
yet, and the answer lists them in the order drawn. That order is the rotation: most clients use
the first address of an answer, and the first position follows the weights exactly, while every
response carries a fresh order (classic DNS round-robin rotates a fixed list instead, which gives
no weights). A pool of a few dozen addresses makes the linear scan cheaper than any index.

Pure: the randomness comes in as `draw(total)`, a number uniform in [0, total), so the tests can
walk every possible sequence of draws and compare the result with the exact distribution.
"""

from __future__ import annotations

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
