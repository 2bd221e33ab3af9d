"""Consistent hashing, Maglev and source hashing: stability, disruption and balance."""

from __future__ import annotations

import subprocess
import sys
from collections import Counter

import pytest
from hypothesis import given, settings
from hypothesis import strategies as st

from tidegate.balancing import State
from tidegate.balancing.schedulers.maglev import Maglev, maglev_table
from tidegate.balancing.schedulers.source_hash import bucket_owners
from tidegate.testing.process import child_env

from .helpers import key, make_pool

KEYS = [key(i) for i in range(20_000)]


@pytest.mark.parametrize("name", ["consistent-hash", "maglev"])
@settings(max_examples=6, deadline=None)
@given(n=st.integers(3, 12), leaving=st.integers(0, 11))
def test_one_of_n_leaving_moves_only_its_own_share_of_keys(name: str, n: int, leaving: int) -> None:
    pool = make_pool(name, [1] * n)
    gone = list(pool)[leaving % n]
    before = [pool.pick(k) for k in KEYS]
    pool.set_state(gone, State.DOWN, cause="test")
    after = [pool.pick(k) for k in KEYS]
    moved = sum(1 for b, a in zip(before, after, strict=True) if b is not a)
    survivors_moved = sum(1 for b, a in zip(before, after, strict=True) if b is not a and b is not gone)
    assert all(a is not gone for a in after)
    assert moved / len(KEYS) <= 1 / n + 0.03
    if name == "consistent-hash":
        assert survivors_moved == 0  # a ring moves exactly the leaver's keys
    else:
        assert survivors_moved / len(KEYS) <= 0.01  # Maglev trades a little of that for balance
    # And when it comes back, every key returns to where it was.
    pool.set_state(gone, State.UP, cause="test")
    assert [pool.pick(k) for k in KEYS] == before


@pytest.mark.parametrize(
    "weights", [[1] * 10, [1, 2, 3, 4, 5], [7, 1], [3] * 30], ids=["10x1", "1-5", "7-1", "30x3"]
)
def test_maglev_table_shares_are_within_one_percent(weights: list[int]) -> None:
    size = 65537  # ≫ 100 * N for every case here
    addresses = [f"10.1.0.{i}:80" for i in range(len(weights))]
    slots = Counter(maglev_table(addresses, weights, size))
    total = sum(weights)
    for i, w in enumerate(weights):
        target = size * w / total
        assert abs(slots[i] - target) / target <= 0.01, (i, slots[i], target)


def test_maglev_table_size_must_be_prime() -> None:
    with pytest.raises(ValueError, match="prime"):
        Maglev(table_size=65536)
    Maglev(table_size=4093)  # IPVS's default


def test_source_hash_lays_out_instances_by_weight_like_ipvs() -> None:
    assert bucket_owners([1, 2])[:6] == [0, 1, 1, 0, 1, 1]
    assert len(bucket_owners([1, 2])) == 256
    assert Counter(bucket_owners([1, 1, 1, 1])) == {0: 64, 1: 64, 2: 64, 3: 64}
    # Weights sharing a factor, or adding up past 256, still leave everyone a bucket.
    assert bucket_owners([4, 8]) == bucket_owners([1, 2])
    assert set(bucket_owners([300, 1])) == {0, 1}


def test_consistent_hash_avoid_goes_where_the_key_would_go_if_the_instance_left() -> None:
    pool = make_pool("consistent-hash", [1, 1, 1, 1])
    keys = KEYS[:2000]
    first = [pool.pick(k) for k in keys]
    victim = first[0]
    assert victim is not None
    with_avoid = [pool.pick(k, avoid={victim}) for k in keys]
    pool.set_state(victim, State.DOWN, cause="test")
    assert with_avoid == [pool.pick(k) for k in keys]


_PICKS_SCRIPT = """
import sys
from tidegate.balancing import Pool
pool = Pool("p", sys.argv[1])
for i in range(5):
    pool.add(f"10.2.0.{i}:80", f"10.2.0.{i}", 80, i + 1)
print(",".join(pool.pick(b"key-%d" % k).address for k in range(300)))
"""


@pytest.mark.parametrize("name", ["consistent-hash", "maglev", "source-hash"])
def test_placement_is_the_same_in_every_process(name: str) -> None:
    # Two gateways (or directors) must agree; Python's hash() would differ between these runs.
    outs = [
        subprocess.run(
            [sys.executable, "-c", _PICKS_SCRIPT, name],
            env=child_env({"PYTHONHASHSEED": seed}),
            capture_output=True,
            text=True,
            check=True,
            timeout=60,
        ).stdout
        for seed in ("1", "2")
    ]
    assert outs[0] == outs[1] and outs[0].count(",") == 299
