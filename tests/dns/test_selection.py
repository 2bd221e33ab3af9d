"""weighted_sample, checked against the exact distribution by walking every sequence of draws."""

from __future__ import annotations

import itertools
import math
import random
from fractions import Fraction

from hypothesis import given
from hypothesis import strategies as st

from tidegate.dns.selection import running_sums, weighted_pick, weighted_sample


class _NeedDraw(Exception):
    def __init__(self, total: float) -> None:
        self.total = total


def exact_outcomes(weights: list[int], k: int) -> dict[tuple[int, ...], Fraction]:
    """Every answer weighted_sample can give, with its probability, for integer weights.

    With integer weights, a draw uniform in [0, total) falls in [j, j+1) with probability 1/total
    for each j, and weighted_sample only compares it with integer sums: j + 0.5 stands for the
    whole interval. So walking every tuple of j is walking every possible run.
    """
    out: dict[tuple[int, ...], Fraction] = {}
    stack: list[tuple[int, ...]] = [()]
    while stack:
        prefix = stack.pop()
        totals: list[float] = []

        def draw(total: float, prefix: tuple[int, ...] = prefix, totals: list[float] = totals) -> float:
            step = len(totals)
            totals.append(total)
            if step < len(prefix):
                return prefix[step] + 0.5
            raise _NeedDraw(total)

        try:
            picked = tuple(weighted_sample(weights, k, draw))
        except _NeedDraw as need:
            assert need.total == int(need.total)
            stack.extend((*prefix, j) for j in range(int(need.total)))
            continue
        p = Fraction(1)
        for t in totals:
            p /= int(t)
        out[picked] = out.get(picked, Fraction(0)) + p
    return out


def expected_outcomes(weights: list[int], k: int) -> dict[tuple[int, ...], Fraction]:
    """Successive draws without replacement, each proportional to weight among those left."""
    live = [i for i, w in enumerate(weights) if w > 0]
    n = min(k, len(live))
    out: dict[tuple[int, ...], Fraction] = {}
    for seq in itertools.permutations(live, n):
        p, left = Fraction(1), sum(weights[i] for i in live)
        for i in seq:
            p *= Fraction(weights[i], left)
            left -= weights[i]
        out[seq] = p
    return out


def _vectors() -> list[list[int]]:
    vs: list[list[int]] = []
    for n in range(0, 4):
        vs.extend(list(v) for v in itertools.product(range(4), repeat=n))
    vs.extend(list(v) for v in itertools.product(range(3), repeat=4))
    vs.append([5, 1, 3, 2, 4])
    return vs


def test_every_run_matches_the_exact_distribution() -> None:
    checked = 0
    for weights in _vectors():
        for k in range(1, len(weights) + 2):
            got = exact_outcomes(weights, k)
            want = expected_outcomes(weights, k) if any(weights) else {(): Fraction(1)}
            assert got == want, (weights, k)
            assert sum(got.values()) == 1
            checked += 1
    assert checked > 500


def test_first_position_follows_the_weights() -> None:
    weights = [1, 2, 3, 4]
    got = exact_outcomes(weights, 2)
    first: dict[int, Fraction] = {}
    for seq, p in got.items():
        first[seq[0]] = first.get(seq[0], Fraction(0)) + p
    assert first == {i: Fraction(w, 10) for i, w in enumerate(weights)}


def test_order_rotates_when_all_are_returned() -> None:
    got = exact_outcomes([1, 1, 1], 3)
    assert len(got) == math.factorial(3)
    assert set(got.values()) == {Fraction(1, 6)}


@given(
    st.lists(st.floats(min_value=0.0, max_value=1e6, allow_nan=False), max_size=12),
    st.integers(min_value=0, max_value=14),
    st.integers(min_value=0, max_value=2**32),
)
def test_properties_with_float_weights(weights: list[float], k: int, seed: int) -> None:
    rng = random.Random(seed)
    picked = weighted_sample(weights, k, lambda t: rng.random() * t)
    positive = [i for i, w in enumerate(weights) if w > 0]
    assert len(picked) == min(k, len(positive))
    assert len(set(picked)) == len(picked)
    assert set(picked) <= set(positive)


def test_a_draw_at_the_top_edge_still_picks_a_live_entry() -> None:
    # Float sums can leave a draw just under `total` above the last partial sum.
    assert weighted_sample([0.1, 0.2, 0.0], 1, lambda t: t) == [1]
    assert weighted_sample([0.0, 0.3, 0.0], 3, lambda t: t) == [1]


@given(
    st.lists(st.sampled_from([0.0, -1.0, 0.5, 1.0, 2.0, 3.0, 1e-9, 7.25]), max_size=8),
    st.sampled_from([0.0, 0.25, 0.5, 0.999999, 1.0, 1.5]),
)
def test_weighted_pick_is_weighted_sample_for_one_answer(weights: list[float], u: float) -> None:
    # u = 1.0 and 1.5 stand for float rounding that leaves the draw at or past the total.
    got = weighted_pick(running_sums(weights), lambda total: u * total)
    want = weighted_sample(weights, 1, lambda total: u * total)
    assert got == (want[0] if want else -1)


def test_weighted_pick_over_every_integer_draw() -> None:
    for weights in _vectors():
        sums = running_sums(weights)
        total = int(sum(w for w in weights if w > 0))
        for j in range(total):
            draw = lambda t, j=j: j + 0.5  # noqa: E731
            assert [weighted_pick(sums, draw)] == weighted_sample(weights, 1, draw)
