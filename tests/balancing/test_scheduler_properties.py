"""Properties every scheduler keeps, whatever the states, weights, keys and `avoid` sets."""

from __future__ import annotations

from collections import Counter

import pytest
from hypothesis import given, settings
from hypothesis import strategies as st

from tidegate.balancing import State

from .helpers import ALL_SCHEDULERS, HASHING, WEIGHTED, key, make_pool

states = st.sampled_from(list(State))


@pytest.mark.parametrize("name", ALL_SCHEDULERS)
@settings(max_examples=40, deadline=None)
@given(
    members=st.lists(st.tuples(states, st.integers(0, 4), st.floats(0.05, 1.0)), min_size=1, max_size=8),
    avoid_mask=st.lists(st.booleans(), min_size=8, max_size=8),
    keys=st.lists(st.binary(max_size=12) | st.none(), min_size=1, max_size=30),
)
def test_only_eligible_instances_are_picked_and_avoid_is_respected(
    name: str,
    members: list[tuple[State, int, float]],
    avoid_mask: list[bool],
    keys: list[bytes | None],
) -> None:
    pool = make_pool(name, [w for _, w, _ in members])
    instances = list(pool)
    for inst, (state, _, ramp) in zip(instances, members, strict=True):
        pool.set_state(inst, state, cause="test")
        pool.set_ramp(inst, ramp)
    eligible = [i for i in instances if i.state in (State.UP, State.SLOW_START) and i.weight > 0]
    avoid = {inst for inst, out in zip(instances, avoid_mask, strict=False) if out}
    outside = [i for i in eligible if i not in avoid]
    for k in keys:
        plain, retry = pool.pick(k), pool.pick(k, avoid)
        if not eligible:
            assert plain is None and retry is None
            continue
        assert plain in eligible and retry in eligible
        if outside:
            assert retry not in avoid


@pytest.mark.parametrize("name", WEIGHTED)
@settings(max_examples=15, deadline=None)
@given(weights=st.lists(st.integers(1, 5), min_size=2, max_size=6))
def test_weight_shares_converge_to_the_weights(name: str, weights: list[int]) -> None:
    pool = make_pool(name, weights)
    picks = 12_000
    counts = Counter(pool.pick(key(i)) for i in range(picks))
    total = sum(weights)
    # Random and hashing schedulers land within a few standard deviations (a ring's arcs vary
    # most); the deterministic ones are exact up to a partial last period.
    tolerance = 0.04 if name == "consistent-hash" else 0.03
    for inst in pool:
        assert abs(counts[inst] / picks - inst.weight / total) < tolerance, (inst, counts)


@pytest.mark.parametrize("name", ["round-robin", "rr", "lc"])
def test_unweighted_schedulers_spread_evenly(name: str) -> None:
    pool = make_pool(name, [1, 5, 2])
    counts = Counter(pool.pick(key(i)) for i in range(3000))
    assert sorted(counts.values()) == [1000, 1000, 1000]


@pytest.mark.parametrize("name", ["weighted-round-robin", "random", "p2c", "least-connections"])
def test_slow_start_ramp_scales_the_share(name: str) -> None:
    pool = make_pool(name, [2, 2])
    ramping, steady = list(pool)
    pool.set_state(ramping, State.SLOW_START, cause="test")
    pool.set_ramp(ramping, 0.25)
    counts = Counter(pool.pick(key(i)) for i in range(10_000))
    assert abs(counts[ramping] / 10_000 - 0.2) < 0.03  # 0.5 of 2.5 effective weight
    assert counts[steady] > counts[ramping]


@pytest.mark.parametrize("name", HASHING)
def test_without_a_key_hashing_falls_back_to_round_robin(name: str) -> None:
    pool = make_pool(name, [1, 1, 1])
    picks = [pool.pick(None) for _ in range(6)]
    assert picks[:3] == picks[3:] and len(set(picks)) == 3


@pytest.mark.parametrize("name", HASHING)
def test_the_same_key_goes_to_the_same_instance(name: str) -> None:
    pool = make_pool(name, [1, 2, 3])
    first = [pool.pick(key(i)) for i in range(500)]
    assert [pool.pick(key(i)) for i in range(500)] == first


@pytest.mark.parametrize("name", ALL_SCHEDULERS)
def test_an_avoided_instance_is_still_returned_when_it_is_the_only_one(name: str) -> None:
    pool = make_pool(name, [3])
    (only,) = pool
    assert pool.pick(b"k", avoid={only}) is only
    assert pool.pick(None, avoid={only}) is only


@pytest.mark.parametrize("name", ALL_SCHEDULERS)
def test_state_and_weight_changes_apply_to_the_next_pick(name: str) -> None:
    pool = make_pool(name, [1, 1, 1])
    a, b, c = pool
    pool.set_state(a, State.DRAINING, cause="test")
    pool.set_weight(b, 0)
    assert {pool.pick(key(i)) for i in range(200)} == {c}
    pool.set_state(c, State.MAINT, cause="test")
    assert pool.pick(b"k") is None


@pytest.mark.parametrize("name", ["round-robin", "weighted-round-robin"])
def test_the_turn_passes_to_the_next_instance_when_one_leaves(name: str) -> None:
    # The gateway's retry after a drain signal: the instance that answered leaves the rotation;
    # the retry must go to the instance after it, not skip one.
    pool = make_pool(name, [1, 1, 1, 1])
    a, b, c, _d = pool
    assert pool.pick() is a
    pool.set_state(a, State.DRAINING, cause="drain signal")
    assert pool.pick(avoid={a}) is b
    assert pool.pick() is c
