"""The dashboard's history (observe/history.py): rings, quantiles from buckets, rates per sample,
pool sums, gaps while an instance is away, bounded memory."""

from __future__ import annotations

import math

from hypothesis import given
from hypothesis import strategies as st

from tidegate.observe.counters import LATENCY_BOUNDS, Counters
from tidegate.observe.history import METRICS, History, Ring, quantile


def test_ring_keeps_the_newest_values_oldest_first() -> None:
    r = Ring(3)
    assert list(r) == []
    for v in range(5):
        r.append(v)
    assert list(r) == [2, 3, 4]
    assert len(r) == 3
    assert r.last(2) == [3, 4]
    assert r.last(10) == [2, 3, 4]
    assert list(Ring(3, fill=2)) == [None, None]


@given(st.integers(1, 20), st.lists(st.integers(), max_size=60))
def test_ring_is_the_tail_of_what_was_appended(size: int, values: list[int]) -> None:
    r = Ring(size)
    for v in values:
        r.append(v)
    assert list(r) == values[-size:] if values else list(r) == []


def test_quantile_interpolates_inside_the_bucket_like_histogram_quantile() -> None:
    counts = [0] * (len(LATENCY_BOUNDS) + 1)
    assert quantile(0.5, counts) is None
    counts[0] = 10  # ten answers in (0, 5 ms]
    assert quantile(0.5, counts) == 0.0025
    counts[0], counts[2] = 0, 4  # four in (10 ms, 25 ms]
    assert math.isclose(quantile(0.5, counts) or 0, 0.0175)
    assert math.isclose(quantile(1.0, counts) or 0, 0.025)
    counts[-1] = 100  # most above the top bound: the top bound is all one can say
    assert quantile(0.99, counts) == LATENCY_BOUNDS[-1]


@given(st.lists(st.integers(0, 50), min_size=len(LATENCY_BOUNDS) + 1, max_size=len(LATENCY_BOUNDS) + 1))
def test_quantiles_are_ordered_and_within_the_bounds(counts: list[int]) -> None:
    p50, p99 = quantile(0.5, counts), quantile(0.99, counts)
    if sum(counts) == 0:
        assert p50 is None and p99 is None
        return
    assert p50 is not None and p99 is not None
    assert 0 <= p50 <= p99 <= LATENCY_BOUNDS[-1]


def _at(doc: dict, pool: str, address: str | None, metric: str) -> list:
    entry = doc["pools"][pool]
    series = entry["pool"] if address is None else entry["instances"][address]
    return series[metric]


def test_points_are_rates_since_the_previous_sample_and_pools_are_sums() -> None:
    h = History(size=10)
    a, b = Counters(), Counters()
    h.sample(100.0, {("web", "a"): a, ("web", "b"): b})
    a.completed, a.bytes_in, a.bytes_out, a.failures, a.active = 20, 2000, 4000, 2, 3
    a.record_latency(0.003)
    a.record_latency(0.02)
    b.completed, b.retries, b.active = 10, 4, 1
    b.record_latency(0.02)
    h.sample(102.0, {("web", "a"): a, ("web", "b"): b})
    doc = h.since()
    assert doc["metrics"] == list(METRICS)
    assert doc["times"] == [100.0, 102.0]
    assert _at(doc, "web", "a", "requests_per_s") == [None, 10.0]
    assert _at(doc, "web", "a", "bytes_out_per_s") == [None, 2000.0]
    assert _at(doc, "web", "a", "failures_per_s") == [None, 1.0]
    assert _at(doc, "web", "b", "retries_per_s") == [None, 2.0]
    assert _at(doc, "web", "a", "connections") == [0, 3]
    assert _at(doc, "web", None, "requests_per_s") == [None, 15.0]
    assert _at(doc, "web", None, "connections") == [0, 4]
    p50 = _at(doc, "web", None, "p50_ms")[1]
    assert 10 < p50 <= 25  # two of three answers took 20 ms
    assert _at(doc, "web", "a", "p99_ms")[1] <= 25
    # A quiet second has rates of 0 and no latency.
    h.sample(103.0, {("web", "a"): a, ("web", "b"): b})
    doc = h.since(102.0)
    assert doc["times"] == [103.0]
    assert _at(doc, "web", "a", "requests_per_s") == [0.0]
    assert _at(doc, "web", "a", "p50_ms") == [None]


def test_an_instance_that_leaves_and_comes_back_keeps_one_series_with_a_gap() -> None:
    h = History(size=10)
    a, b = Counters(), Counters()
    h.sample(1.0, {("web", "a"): a, ("web", "b"): b})
    a.completed = 5
    h.sample(2.0, {("web", "a"): a, ("web", "b"): b})
    h.sample(3.0, {("web", "b"): b})  # a is upgraded: out of the pool
    fresh = Counters()  # its new process: a new Counters object under the same address
    fresh.completed = 3
    h.sample(4.0, {("web", "a"): fresh, ("web", "b"): b})
    fresh.completed = 7
    h.sample(5.0, {("web", "a"): fresh, ("web", "b"): b})
    doc = h.since()
    assert _at(doc, "web", "a", "requests_per_s") == [None, 5.0, None, None, 4.0]
    # A newcomer's series starts with None where it was not there yet.
    h.sample(6.0, {("web", "a"): fresh, ("web", "b"): b, ("web", "c"): Counters()})
    assert _at(h.since(), "web", "c", "connections") == [None] * 5 + [0]


def test_memory_is_bounded_and_departed_series_age_out() -> None:
    h = History(size=4)
    c = Counters()
    for t in range(1, 20):
        c.completed += 1
        h.sample(float(t), {("web", "a"): c} if t < 10 else {("web", "b"): c})
    doc = h.since()
    assert doc["times"] == [16.0, 17.0, 18.0, 19.0]
    assert set(doc["pools"]["web"]["instances"]) == {"b"}
    assert all(len(v) == 4 for v in doc["pools"]["web"]["pool"].values())


def test_a_clock_that_goes_back_adds_nothing() -> None:
    h = History(size=4)
    c = Counters()
    h.sample(5.0, {("web", "a"): c})
    h.sample(5.0, {("web", "a"): c})
    h.sample(4.0, {("web", "a"): c})
    assert h.since()["times"] == [5.0]
