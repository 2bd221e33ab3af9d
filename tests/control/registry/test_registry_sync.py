"""From registry records to pool operations (control/registry/sync.py): rules and convergence."""

from __future__ import annotations

from collections.abc import Mapping

from hypothesis import given, settings
from hypothesis import strategies as st

from tidegate.balancing.pool import Pool
from tidegate.balancing.state import State
from tidegate.control.registry.layout import (
    Registration,
    encode_hold,
    encode_registration,
    encode_weight,
    hold_key,
    instance_key,
    process_key,
    weight_key,
)
from tidegate.control.registry.sync import (
    Add,
    PoolRecords,
    Release,
    Remove,
    Seen,
    SetHold,
    SetMeta,
    SetWeight,
    Snapshot,
    apply_ops,
    owned_after,
    plan,
    seen_in,
)

P = "/tidegate/"
A, B, C = "127.0.0.1:9001", "127.0.0.1:9002", "127.0.0.1:9003"


# --- Snapshot ---------------------------------------------------------------------------------
def test_snapshot_reads_every_kind_and_reports_bad_values() -> None:
    snap = Snapshot(P)
    snap.load(
        10,
        [
            (instance_key(P, "web", A), 3, encode_registration(Registration(2, {"supervisor": "http://s"}))),
            (hold_key(P, "web", A), 4, encode_hold("maint")),
            (weight_key(P, "web", B), 5, encode_weight(7)),
            (instance_key(P, "web", "no-port"), 6, encode_registration(Registration())),
            (hold_key(P, "api", C), 7, b"garbage"),
            (process_key(P, "host:1"), 8, b"{}"),
            ("/tidegate/other/thing", 9, b"x"),
        ],
    )
    pools, problems = snap.pools()
    assert pools["web"] == PoolRecords(
        instances={A: Registration(2, {"supervisor": "http://s"})}, holds={A: "maint"}, weights={B: 7}
    )
    assert pools["api"] == PoolRecords()
    assert len(problems) == 2
    assert problems[0].startswith("instances/web/no-port:")
    assert problems[1].startswith("holds/api/127.0.0.1:9003: not JSON")
    assert snap.revision == 10


def test_snapshot_ignores_events_older_than_what_it_knows() -> None:
    snap = Snapshot(P)
    key = hold_key(P, "web", A)
    assert snap.apply(key, 11, encode_hold("drain"))  # this process's own write, applied at once
    assert not snap.apply(key, 10, encode_hold("maint"))  # the lagging watch's older event
    assert not snap.apply(key, 11, encode_hold("drain"))  # and then the write's own event
    assert snap.pools()[0]["web"].holds == {A: "drain"}
    assert snap.apply(key, 12, None)
    assert not snap.apply(key, 11, encode_hold("drain"))  # the tombstone keeps it deleted
    assert snap.pools()[0] == {}
    snap.load(5, [(key, 4, encode_hold("maint"))])  # a resync is the truth and drops tombstones
    assert snap.pools()[0]["web"].holds == {A: "maint"}
    assert snap.revision == 5


# --- plan: the rules --------------------------------------------------------------------------
def test_registered_instances_are_added_with_their_weight_and_meta() -> None:
    records = PoolRecords(instances={A: Registration(3, {"supervisor": "u"})})
    assert plan({}, records, {}, ()) == [Add(A, 3, {"supervisor": "u"})]


def test_vanished_registrations_are_removed_but_only_the_registrys_own() -> None:
    seen = {A: Seen(1), B: Seen(1), C: Seen(1)}
    # A: the registry added it; B: the file lists it; C: neither (not the registry's to remove)
    assert plan(seen, PoolRecords(), {B: 1}, {A, B}) == [Remove(A)]


def test_an_address_the_file_lists_is_the_files() -> None:
    records = PoolRecords(instances={A: Registration(5, {"supervisor": "u"})})
    assert plan({A: Seen(2)}, records, {A: 2}, ()) == []  # file weight, file meta (none)
    assert owned_after(records, {A: 2}) == set()
    assert owned_after(records, {}) == {A}


def test_weight_precedence_operator_then_file_then_registration() -> None:
    records = PoolRecords(instances={A: Registration(3), B: Registration(3)}, weights={A: 9})
    assert plan({A: Seen(3), B: Seen(3), C: Seen(1)}, records, {C: 4}, {A, B}) == [
        SetWeight(A, 9),
        SetWeight(C, 4),
    ]
    # an operator weight for a new registration applies from the start
    assert plan({}, records, {}, ()) == [Add(A, 9, {}), Add(B, 3, {})]


def test_meta_follows_a_new_registration_of_the_same_address() -> None:
    records = PoolRecords(instances={A: Registration(1, {"supervisor": "new"})})
    assert plan({A: Seen(1, meta={"supervisor": "old"})}, records, {}, {A}) == [
        SetMeta(A, {"supervisor": "new"})
    ]


def test_holds_are_set_whatever_the_local_state() -> None:
    for state in State:
        for held in (False, True):
            if held and state is not State.DRAINING:
                continue
            seen = {A: Seen(1, state, held)}
            maint = plan(seen, PoolRecords(holds={A: "maint"}), {A: 1}, ())
            drain = plan(seen, PoolRecords(holds={A: "drain"}), {A: 1}, ())
            assert maint == ([] if state is State.MAINT else [SetHold(A, State.MAINT)])
            assert drain == ([] if state is State.DRAINING and held else [SetHold(A, State.DRAINING)])


def test_no_hold_releases_only_the_operators_states() -> None:
    cases = {
        (State.UP, False): [],
        (State.SLOW_START, False): [],
        (State.DOWN, False): [],  # health's verdict: local
        (State.DRAINING, False): [],  # the instance's own drain signal: local
        (State.DRAINING, True): [Release(A)],
        (State.MAINT, False): [Release(A)],
    }
    for (state, held), expected in cases.items():
        assert plan({A: Seen(1, state, held)}, PoolRecords(), {A: 1}, ()) == expected


def test_a_new_registration_with_a_hold_never_takes_work() -> None:
    pool = Pool("web")
    records = PoolRecords(instances={A: Registration()}, holds={A: "drain"})
    apply_ops(pool, plan(seen_in(pool), records, {}, ()))
    inst = pool.get(A)
    assert inst is not None and inst.state is State.DRAINING and pool.held(inst)
    assert pool.pick() is None


def test_release_readmits_through_slow_start_when_the_pool_ramps() -> None:
    pool = Pool("web", slow_start=10.0, clock=lambda: 100.0)
    inst = pool.add(A, "127.0.0.1", 9001)
    apply_ops(pool, [SetHold(A, State.MAINT)])
    assert inst.state is State.MAINT
    apply_ops(pool, plan(seen_in(pool), PoolRecords(), {A: 1}, ()))
    assert inst.state is State.SLOW_START


def test_ops_on_vanished_instances_are_skipped() -> None:
    pool = Pool("web")
    apply_ops(pool, [SetWeight(A, 3), SetHold(A, State.MAINT), Release(A), SetMeta(A, {})])
    assert len(pool) == 0


# --- plan: convergence ------------------------------------------------------------------------
ADDRESSES = [f"127.0.0.1:{9000 + i}" for i in range(5)]
addresses = st.sampled_from(ADDRESSES)
local_states = st.sampled_from(
    [
        (State.UP, False),
        (State.SLOW_START, False),
        (State.DOWN, False),
        (State.DRAINING, False),
        (State.DRAINING, True),
        (State.MAINT, False),
    ]
)


def _pool(seen: Mapping[str, tuple[int, tuple[State, bool]]], slow: bool) -> Pool:
    pool = Pool("web", slow_start=5.0 if slow else 0.0, clock=lambda: 0.0)
    for address, (weight, (state, held)) in seen.items():
        inst = pool.add(address, "127.0.0.1", int(address.rpartition(":")[2]), weight)
        pool.set_state(inst, state, "test", held=held)
    return pool


@settings(max_examples=300, deadline=None)
@given(
    seen=st.dictionaries(addresses, st.tuples(st.integers(0, 5), local_states)),
    registered=st.dictionaries(addresses, st.integers(0, 5)),
    holds=st.dictionaries(addresses, st.sampled_from(["drain", "maint"])),
    weights=st.dictionaries(addresses, st.integers(0, 5)),
    static=st.dictionaries(addresses, st.integers(0, 5)),
    owned=st.sets(addresses),
    slow=st.booleans(),
)
def test_one_plan_converges_and_health_verdicts_stay_local(
    seen: dict[str, tuple[int, tuple[State, bool]]],
    registered: dict[str, int],
    holds: dict[str, str],
    weights: dict[str, int],
    static: dict[str, int],
    owned: set[str],
    slow: bool,
) -> None:
    pool = _pool(seen, slow)
    records = PoolRecords({a: Registration(w) for a, w in registered.items()}, holds, weights)  # type: ignore[arg-type]
    apply_ops(pool, plan(seen_in(pool), records, static, owned))
    now_owned = owned_after(records, static)
    assert plan(seen_in(pool), records, static, now_owned) == []  # one pass is enough
    for address in registered:
        assert pool.get(address) is not None
    for address in owned - set(registered) - set(static):
        assert pool.get(address) is None
    for inst in pool:
        hold = holds.get(inst.address)
        if hold == "maint":
            assert inst.state is State.MAINT
        elif hold == "drain":
            assert inst.state is State.DRAINING and pool.held(inst)
        else:
            assert inst.state is not State.MAINT and not pool.held(inst)
            before = seen.get(inst.address)
            if before is not None and before[1] in ((State.DOWN, False), (State.DRAINING, False)):
                assert inst.state is before[1][0]  # the local health verdict is kept
        if inst.address in weights:
            assert inst.weight == weights[inst.address]
        elif inst.address in static:
            assert inst.weight == static[inst.address]
        elif inst.address in registered:
            assert inst.weight == registered[inst.address]
