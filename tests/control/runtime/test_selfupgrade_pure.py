"""The pure parts of a self-upgrade: the state snapshot's round trip, and the old process's
state machine, every phase and event."""

from __future__ import annotations

import itertools
import json

import pytest
from hypothesis import given, settings
from hypothesis import strategies as st

from tidegate.balancing.pool import Pool
from tidegate.balancing.state import State
from tidegate.control.runtime.handover_state import (
    VERSION,
    Snapshot,
    SnapshotError,
    Verdict,
    add_counters,
    capture,
    counters_doc,
    restore,
)
from tidegate.control.runtime.upgrade_machine import Action, Event, Phase, step
from tidegate.observe.counters import LATENCY_BOUNDS, Counters

_instance = st.fixed_dictionaries(
    {
        "weight": st.integers(0, 100),
        "state": st.sampled_from(list(State)),
        "held": st.booleans(),
        "ramp": st.floats(0.0, 1.0),
        "meta": st.dictionaries(st.text(max_size=5), st.text(max_size=5), max_size=2),
        "completed": st.integers(0, 10**12),
        "bytes_in": st.integers(0, 10**15),
        "latency": st.lists(
            st.integers(0, 10**6), min_size=len(LATENCY_BOUNDS) + 1, max_size=len(LATENCY_BOUNDS) + 1
        ),
        "in_config": st.booleans(),
    }
)
_pools = st.dictionaries(
    st.sampled_from(["web", "api", "db"]),
    st.dictionaries(st.integers(1, 60000).map(lambda p: f"127.0.0.1:{p}"), _instance, max_size=4),
    max_size=3,
)
_verdicts = st.builds(
    Verdict, st.booleans(), st.integers(0, 5), st.none() | st.floats(0, 300, allow_nan=False)
)


def _build(spec: dict[str, dict[str, dict]]) -> tuple[dict[str, Pool], dict[str, set[str]]]:
    pools: dict[str, Pool] = {}
    registered: dict[str, set[str]] = {}
    for name, instances in spec.items():
        pool = pools[name] = Pool(name)
        for address, i in instances.items():
            inst = pool.add(address, "127.0.0.1", int(address.rpartition(":")[2]), 1)
            pool.set_weight(inst, i["weight"])
            pool.set_state(inst, i["state"], "test", held=i["held"])
            pool.set_ramp(inst, i["ramp"])
            inst.meta.update(i["meta"])
            inst.counters.completed = i["completed"]
            inst.counters.bytes_in = i["bytes_in"]
            inst.counters.latency_counts = list(i["latency"])
            inst.counters.latency_sum = float(sum(i["latency"]))
            if not i["in_config"]:
                registered.setdefault(name, set()).add(address)
    return pools, registered


def _fresh(spec: dict[str, dict[str, dict]]) -> dict[str, Pool]:
    """The pools a new process builds from the config: config instances only, defaults."""
    pools: dict[str, Pool] = {}
    for name, instances in spec.items():
        pool = pools[name] = Pool(name)
        for address, i in instances.items():
            if i["in_config"]:
                pool.add(address, "127.0.0.1", int(address.rpartition(":")[2]), 1)
    return pools


@settings(max_examples=150, deadline=None)
@given(_pools, st.data())
def test_a_snapshot_survives_json_and_restores_the_same_pools(spec: dict, data: st.DataObject) -> None:
    pools, registered = _build(spec)
    health = {
        name: {a: data.draw(_verdicts) for a in instances} for name, instances in spec.items() if instances
    }
    snap = capture(pools, registered, health)
    doc = json.loads(json.dumps(snap.to_json()))
    back = Snapshot.from_json(doc)
    assert back == snap
    fresh = _fresh(spec)
    fresh_registered: dict[str, set[str]] = {}
    restore(back, fresh, fresh_registered)
    again = capture(fresh, fresh_registered, health)
    # Equal up to the order instances were added in (a registered one comes back after the
    # config's); registrations of pools with none left are not kept as empty sets.
    assert again.pools == snap.pools
    assert {k: v for k, v in again.registered.items() if v} == {k: v for k, v in snap.registered.items() if v}
    assert again.health == snap.health


def test_another_version_is_refused_whole() -> None:
    doc = Snapshot().to_json()
    doc["version"] = VERSION + 1
    with pytest.raises(SnapshotError, match="version"):
        Snapshot.from_json(doc)
    with pytest.raises(SnapshotError):
        Snapshot.from_json({"version": VERSION, "pools": []})
    with pytest.raises(SnapshotError):
        Snapshot.from_json([])


def test_what_the_config_dropped_is_left_out() -> None:
    pools, registered = _build(
        {"web": {"127.0.0.1:1": {"weight": 3, "state": State.MAINT, "held": False, "ramp": 1.0, "meta": {},
                                 "completed": 5, "bytes_in": 0, "latency": [0] * (len(LATENCY_BOUNDS) + 1),
                                 "in_config": True}}}
    )  # fmt: skip
    snap = capture(pools, registered)
    fresh = {"api": Pool("api")}
    restore(snap, fresh, {})
    assert list(fresh) == ["api"] and len(fresh["api"]) == 0


@given(
    st.lists(st.integers(0, 1000), min_size=3, max_size=3),
    st.lists(st.integers(0, 1000), min_size=3, max_size=3),
)
def test_counters_only_grow_by_what_grew(start: list[int], more: list[int]) -> None:
    old = Counters(completed=start[0], bytes_in=start[1], bytes_out=start[2])
    before = counters_doc(old)
    old.completed += more[0]
    old.bytes_in += more[1]
    old.bytes_out += more[2]
    after = counters_doc(old)
    new = Counters()
    add_counters(new, before)
    assert (new.completed, new.bytes_in, new.bytes_out) == tuple(start)
    add_counters(new, after, before)
    assert (new.completed, new.bytes_in, new.bytes_out) == (old.completed, old.bytes_in, old.bytes_out)
    add_counters(new, before, after)  # smaller than before: never a decrease
    assert new.completed == old.completed


@given(st.lists(st.integers(200, 599), max_size=30), st.lists(st.integers(100, 599), max_size=30))
def test_responses_by_class_carry_on_across_an_upgrade(first: list[int], then: list[int]) -> None:
    old = Counters()
    for status in first:
        old.count_status(status)
    before = json.loads(json.dumps(counters_doc(old)))  # as the channel carries it
    for status in then:
        old.count_status(status)
    after = json.loads(json.dumps(counters_doc(old)))
    new = Counters()
    add_counters(new, before)
    add_counters(new, after, before)
    assert new.status_counts == old.status_counts
    assert sum(new.status_counts) == len(first) + len(then)
    legacy = {k: v for k, v in after.items() if k != "status_counts"}  # from an older release
    add_counters(new, legacy, before)
    assert new.status_counts == old.status_counts


# --- the machine ------------------------------------------------------------------------------------
def test_every_phase_and_event_has_an_answer() -> None:
    for phase, event in itertools.product(Phase, Event):
        new, actions = step(phase, event)
        assert isinstance(new, Phase)
        if event is Event.REQUESTED and phase is not Phase.IDLE:
            assert (new, actions) == (phase, (Action.REFUSE,))


def test_the_way_through() -> None:
    seen = []
    phase = Phase.IDLE
    for event in (Event.REQUESTED, Event.HELLO, Event.READY, Event.DRAINED):
        phase, actions = step(phase, event)
        seen.append((phase, actions))
    assert seen == [
        (Phase.SPAWNING, (Action.SPAWN,)),
        (Phase.WAITING_READY, (Action.SEND_STATE,)),
        (Phase.DRAINING, (Action.COMMIT,)),
        (Phase.EXITED, (Action.HAND_FIGURES, Action.EXIT)),
    ]


@given(st.lists(st.sampled_from(list(Event)), max_size=30))
def test_never_leaves_unless_the_new_process_was_ready(events: list[Event]) -> None:
    phase = Phase.IDLE
    ready_seen = False
    for event in events:
        before = phase
        phase, actions = step(phase, event)
        if Action.COMMIT in actions:
            assert before is Phase.WAITING_READY and event is Event.READY
            ready_seen = True
        if Action.EXIT in actions or phase in (Phase.DRAINING, Phase.EXITED):
            assert ready_seen
        if Action.ABANDON in actions:
            # A failure before `ready` always stops the new process and serves on.
            assert before in (Phase.SPAWNING, Phase.WAITING_READY) and phase is Phase.IDLE
        if before is Phase.IDLE and event is not Event.REQUESTED:
            assert (phase, actions) == (Phase.IDLE, ())


# --- counters of /metrics other than the instances' (carried.py) ------------------------------------
def test_carried_counters_add_to_the_same_samples_and_fill_in_missing_ones() -> None:
    from prometheus_client.core import CounterMetricFamily, GaugeMetricFamily

    from tidegate.control.runtime.carried import SEEDED_PREFIX, add_carried, counter_values

    def families(accepted: float, per_instance: dict[str, float], seeded: float) -> list:
        c = CounterMetricFamily("tidegate_tcp_accepted_connections", "x", labels=["listener"])
        c.add_metric(["tcp"], accepted)
        i = CounterMetricFamily("tidegate_tcp_instance_opened_connections", "x", labels=["instance"])
        for address, n in per_instance.items():
            i.add_metric([address], n)
        g = GaugeMetricFamily("tidegate_tcp_open_connections", "x", value=5)
        s = CounterMetricFamily(SEEDED_PREFIX + "requests", "x", labels=["instance"])
        s.add_metric(["a"], seeded)
        return [c, i, g, s]

    old = counter_values(families(10, {"a": 4, "b": 6}, 100))
    assert all(not k.startswith(SEEDED_PREFIX) for k in old)
    new = list(add_carried(families(1, {"a": 1}, 7), json.loads(json.dumps(old))))
    values = {s.name + str(sorted(s.labels.items())): s.value for m in new for s in m.samples}
    assert values["tidegate_tcp_accepted_connections_total[('listener', 'tcp')]"] == 11
    assert values["tidegate_tcp_instance_opened_connections_total[('instance', 'a')]"] == 5
    assert values["tidegate_tcp_instance_opened_connections_total[('instance', 'b')]"] == 6  # filled in
    assert values["tidegate_tcp_open_connections[]"] == 5  # a gauge is this process's own
    assert values[SEEDED_PREFIX + "requests_total[('instance', 'a')]"] == 7  # seeded elsewhere
