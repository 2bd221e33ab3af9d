"""Where a new connection's attempts go: pure, on a real Pool."""

from __future__ import annotations

from hypothesis import given
from hypothesis import strategies as st

from tidegate.balancing import Instance, Pool, State
from tidegate.tcp.attempts import client_key, next_instance


def make_pool(n: int) -> Pool:
    pool = Pool("p")
    for i in range(n):
        pool.add(f"127.0.0.1:{9000 + i}", "127.0.0.1", 9000 + i)
    return pool


def attempts(pool: Pool, max_tries: int, key: bytes | None = None) -> list[Instance]:
    tried: list[Instance] = []
    while (inst := next_instance(pool, key, tried, max_tries)) is not None:
        tried.append(inst)
    return tried


@given(st.integers(0, 8), st.integers(1, 10), st.sets(st.integers(0, 7)))
def test_each_try_on_another_eligible_instance(n: int, max_tries: int, drained: set[int]) -> None:
    pool = make_pool(n)
    insts = list(pool)
    for i in drained:
        if i < n:
            pool.set_state(insts[i], State.DRAINING, "test")
    eligible = [inst for inst in insts if inst.available]
    tried = attempts(pool, max_tries)
    assert len(tried) == len(set(tried)) == min(max_tries, len(eligible))
    assert all(inst.available for inst in tried)


def test_no_instance_no_attempt() -> None:
    assert attempts(make_pool(0), 3) == []
    pool = make_pool(2)
    for inst in pool:
        pool.set_state(inst, State.MAINT, "test")
    assert attempts(pool, 3) == []


def test_client_key_is_the_packed_address() -> None:
    assert client_key(("10.1.2.3", 5555)) == bytes([10, 1, 2, 3])
    assert client_key(("::ffff:10.1.2.3", 5555, 0, 0)) == bytes([10, 1, 2, 3])
    assert client_key(("2001:db8::1", 5555, 0, 0)) == bytes.fromhex("20010db8000000000000000000000001")
    assert client_key(("fe80::1%eth0", 1, 0, 2)) == bytes.fromhex("fe800000000000000000000000000001")
    # Port is not part of the key: one client's connections keep their affinity.
    assert client_key(("10.1.2.3", 1)) == client_key(("10.1.2.3", 2))
    assert client_key("/run/tidegate.sock") is None
    assert client_key(None) is None
    assert client_key(("not-an-ip", 1)) is None
