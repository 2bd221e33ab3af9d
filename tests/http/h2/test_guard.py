"""The HTTP/2 abuse budgets (leaky buckets), exhaustively over event timings."""

from __future__ import annotations

from hypothesis import given
from hypothesis import strategies as st

from tidegate.http.h2.guard import Abuse, Budget, Guard


def test_a_burst_of_capacity_passes_and_one_more_does_not() -> None:
    b = Budget(100, 20)
    assert all(b.spend(5.0) for _ in range(100))
    assert not b.spend(5.0)


def test_the_bucket_refills_at_its_rate() -> None:
    b = Budget(10, 20)
    assert all(b.spend(0.0) for _ in range(10))
    assert not b.spend(0.0)
    # 0.5 s later 10 have leaked out (11 were counted): 9 more fit, not 10
    assert all(b.spend(0.5) for _ in range(9))
    assert not b.spend(0.5)


@given(st.lists(st.floats(min_value=0.0, max_value=1.0), min_size=1, max_size=300))
def test_a_client_within_the_rate_is_never_cut(gaps: list[float]) -> None:
    b = Budget(5, 10)
    now = 0.0
    for gap in gaps:
        now += max(gap, 0.1)  # at most 10 a second
        assert b.spend(now)


@given(st.lists(st.floats(min_value=-5.0, max_value=5.0), min_size=1, max_size=300))
def test_the_level_never_exceeds_what_was_spent_and_a_clock_going_back_refills_nothing(
    steps: list[float],
) -> None:
    b = Budget(50, 10)
    now = 100.0
    for spent, step in enumerate(steps, 1):
        now += step
        before = b.level
        b.spend(now)
        assert 0 <= b.level <= spent
        if step <= 0:
            assert b.level == before + 1


def test_each_abuse_has_its_own_budget() -> None:
    g = Guard()
    assert all(g.spend(Abuse.RESETS, 0.0) for _ in range(100))
    assert not g.spend(Abuse.RESETS, 0.0)
    assert g.spend(Abuse.CONTROL, 0.0) and g.spend(Abuse.EMPTY, 0.0)
