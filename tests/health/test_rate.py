import pytest
from hypothesis import given
from hypothesis import strategies as st

from tidegate.observe.counters import Counters
from tidegate.observe.iops import IopsMeter
from tidegate.observe.rate import SlidingRate


def test_constant_rate_is_exact() -> None:
    r = SlidingRate(window=10.0, resolution=0.5)
    for i in range(0, 301):
        t = i * 0.1
        r.add(t, int(250 * t))  # 250 per second
    assert r.rate() == pytest.approx(250, rel=0.01)
    assert 10.0 <= r.span() <= 10.6


def test_only_the_window_counts() -> None:
    r = SlidingRate(window=5.0, resolution=0.5)
    total = 0
    for i in range(0, 200):  # 20 s: 1000/s for 10 s, then idle
        t = i * 0.1
        if t < 10:
            total += 100
        r.add(t, total)
    assert r.rate() == 0.0


def test_too_few_samples_is_zero() -> None:
    r = SlidingRate()
    assert r.rate() == 0.0
    r.add(1.0, 100)
    assert r.rate() == 0.0


def test_clock_going_back_is_ignored() -> None:
    r = SlidingRate(window=10.0, resolution=0.5)
    r.add(1.0, 0)
    r.add(2.0, 100)
    r.add(1.5, 5000)
    assert r.rate() == pytest.approx(100)


@given(
    st.floats(1.0, 30.0),
    st.lists(st.tuples(st.floats(0.001, 2.0), st.integers(0, 1000)), min_size=2, max_size=200),
)
def test_rate_is_the_exact_change_over_its_span_and_memory_is_bounded(
    window: float, steps: list[tuple[float, int]]
) -> None:
    r = SlidingRate(window=window, resolution=0.25)
    t, total = 0.0, 0
    history = [(t, total)]
    r.add(t, total)
    for dt, n in steps:
        t += dt
        total += n
        history.append((t, total))
        r.add(t, total)
    span = r.span()
    assert span >= min(window, t) - 1e-9 or span == pytest.approx(min(window, t))
    # The rate equals (change of the total) / span for the samples it kept.
    start = t - span
    before = [c for (ts, c) in history if ts <= start + 1e-9]
    if span > 0:
        assert r.rate() == pytest.approx((total - before[-1]) / span, rel=1e-6)
    assert len(r._samples) <= window / 0.25 + 3


def test_iops_meter_follows_counters_and_forgets_the_gone() -> None:
    a, b = Counters(), Counters()
    meter = IopsMeter(window=2.0, resolution=0.1)
    for i in range(0, 31):
        a.completed = 10 * i  # 100/s with samples every 0.1 s
        b.completed = i
        meter.sample(i * 0.1, [a, b])
    assert meter.iops(a) == pytest.approx(100)
    assert meter.iops(b) == pytest.approx(10)
    meter.sample(3.1, [a])
    assert meter.iops(b) == 0.0
    assert meter.iops(Counters()) == 0.0
