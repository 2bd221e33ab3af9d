"""The pure parts of the main ↔ worker exchange: counter increases, pool mirrors, passive results."""

from __future__ import annotations

import asyncio

from hypothesis import given
from hypothesis import strategies as st

from tidegate.balancing.pool import Pool
from tidegate.balancing.state import State
from tidegate.observe.counters import Counters
from tidegate.workers import wire


def _bump(c: Counters, active: int, done: int, latency: float) -> None:
    c.active += active
    c.completed += done
    c.bytes_in += 10 * done
    c.bytes_out += 100 * done
    for _ in range(done):
        c.record_latency(latency)


@given(st.lists(st.tuples(st.integers(-3, 3), st.integers(0, 5), st.floats(0, 100)), max_size=20))
def test_increases_sum_to_the_worker_totals(steps: list[tuple[int, int, float]]) -> None:
    worker, main = Counters(), Counters()
    main.completed = 7  # the main process's own traffic stays counted
    last = None
    for active, done, latency in steps:
        _bump(worker, active, done, latency)
        vec = wire.counters_vector(worker)
        wire.add_increase(main, vec, last)
        last = vec
    assert main.active == worker.active
    assert main.completed == worker.completed + 7
    assert main.bytes_out == worker.bytes_out
    assert main.latency_counts == worker.latency_counts


def test_a_restarted_worker_counts_from_zero() -> None:
    main = Counters()
    old = Counters()
    _bump(old, 0, 5, 0.01)
    wire.add_increase(main, wire.counters_vector(old), None)
    fresh = Counters()
    _bump(fresh, 0, 2, 0.01)
    wire.add_increase(main, wire.counters_vector(fresh), wire.counters_vector(old))
    assert main.completed == 7
    assert sum(main.latency_counts) == 7


def test_mirror_follows_membership_weight_and_state() -> None:
    main = {"web": Pool("web")}
    a = main["web"].add("10.0.0.1:80", "10.0.0.1", 80)
    main["web"].add("10.0.0.2:80", "10.0.0.2", 80, weight=3)
    mirror = wire.apply_snapshot({}, wire.pool_snapshot(main))
    m = mirror["web"]
    assert [(i.address, i.weight, i.state) for i in m] == [
        ("10.0.0.1:80", 1, State.UP),
        ("10.0.0.2:80", 3, State.UP),
    ]
    main["web"].set_state(a, State.DRAINING, "operator: drain")
    main["web"].set_weight(main["web"].get("10.0.0.2:80"), 0)  # type: ignore[arg-type]
    main["web"].add("10.0.0.3:80", "10.0.0.3", 80)
    main["web"].remove("10.0.0.1:80")
    again = wire.apply_snapshot(mirror, wire.pool_snapshot(main))
    assert again["web"] is m  # same pool object: in-flight requests keep theirs
    assert [(i.address, i.weight) for i in m] == [("10.0.0.2:80", 0), ("10.0.0.3:80", 1)]
    assert m.pick() is m.get("10.0.0.3:80")
    main["web"].set_state(main["web"].get("10.0.0.3:80"), State.DRAINING, "operator: drain")  # type: ignore[arg-type]
    wire.apply_snapshot(mirror, wire.pool_snapshot(main))
    assert m.held(m.get("10.0.0.3:80"))  # type: ignore[arg-type]
    assert m.pick() is None
    main["web"].set_scheduler("least-connections")
    assert wire.apply_snapshot(again, wire.pool_snapshot(main))["web"] is not m


def test_passive_results_replay_consecutive_failures() -> None:
    seen: list[tuple[str, bool]] = []
    worker = Pool("web")
    wa = worker.add("a:1", "a", 1)
    main = Pool("web")
    main.add("a:1", "a", 1)
    main.on_result = lambda inst, ok: seen.append((inst.address, ok))
    passive = wire.PassiveResults()
    worker.on_result = passive.hook("web")
    for ok in (False, True, False, False):
        worker.report(wa, ok)
    wire.replay_results({"web": main}, passive.take())
    assert seen == [("a:1", True), ("a:1", False), ("a:1", False)]
    assert passive.take() == []


async def test_frames_round_trip() -> None:
    reader = asyncio.StreamReader()
    reader.feed_data(wire.frame({"type": "pools", "seq": 3}) + wire.frame({"x": [1, 2]}))
    reader.feed_eof()
    assert await wire.read_message(reader) == {"type": "pools", "seq": 3}
    assert await wire.read_message(reader) == {"x": [1, 2]}
    assert await wire.read_message(reader) is None
