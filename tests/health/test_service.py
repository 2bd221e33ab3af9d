"""The health service in-process against real backends on 127.0.0.1, with short intervals.

Every wait is on a state change event (Pool.subscribe), bounded by a timeout; times are measured
from the event that causes them (backend killed / restarted) to the state change."""

from __future__ import annotations

import asyncio
import time
from collections.abc import AsyncIterator, Callable
from typing import Any

import pytest

from tidegate.balancing.pool import Pool, StateChange
from tidegate.balancing.state import State
from tidegate.balancing.transitions import Event
from tidegate.config.model import Config
from tidegate.control.runtime.process import Runtime
from tidegate.health.service import HealthService


class Watcher:
    """Every state change of a pool, with its monotonic time; waits without sleeping."""

    def __init__(self, pool: Pool) -> None:
        self.changes: list[tuple[float, StateChange]] = []
        self._cond = asyncio.Condition()
        pool.subscribe(self._on)

    def _on(self, change: StateChange) -> None:
        self.changes.append((time.monotonic(), change))

        async def notify() -> None:
            async with self._cond:
                self._cond.notify_all()

        asyncio.get_running_loop().create_task(notify())

    async def wait(self, pred: Callable[[StateChange], bool], after: float = 0.0, timeout: float = 10.0):
        async def find() -> tuple[float, StateChange]:
            async with self._cond:
                while True:
                    for t, c in self.changes:
                        if t >= after and pred(c):
                            return t, c
                    await self._cond.wait()

        return await asyncio.wait_for(find(), timeout)

    async def state(self, address: str, state: State, after: float = 0.0, timeout: float = 10.0):
        return await self.wait(lambda c: c.address == address and c.new is state, after, timeout)


def config(pools: list[dict[str, Any]]) -> Config:
    return Config.model_validate({"pools": pools})


@pytest.fixture
async def running() -> AsyncIterator[Callable[[Config], Any]]:
    made: list[HealthService] = []

    async def start(cfg: Config) -> tuple[Runtime, HealthService]:
        rt = Runtime(cfg)
        svc = HealthService(cfg, rt)
        await svc.start()
        made.append(svc)
        return rt, svc

    yield start
    for svc in made:
        await svc.stop(0)


INTERVAL = 0.1


async def test_killed_goes_down_within_fall_and_returns_through_slow_start_after_rise(
    backends, running
) -> None:
    a, b = await backends.new(), await backends.new()
    rise, fall, slow = 2, 3, 0.5
    cfg = config(
        [
            {
                "name": "web",
                "slow_start": slow,
                "instances": [{"address": a.address}, {"address": b.address}],
                "health": {"type": "http", "interval": INTERVAL, "timeout": 0.1, "rise": rise, "fall": fall},
            }
        ]
    )
    rt, svc = await running(cfg)
    pool = rt.pools["web"]
    w = Watcher(pool)
    inst = pool.get(a.address)
    assert inst is not None and inst.state is State.UP

    # Counted in check rounds (exact), and in seconds (bounded loosely: a loaded machine delays
    # the loop; the printed figure is the measurement).
    rounds: dict[State, int] = {}
    pool.subscribe(lambda c: rounds.setdefault(c.new, svc.rounds("web")))
    killed = time.monotonic()
    at_kill = svc.rounds("web")
    await a.stop()
    t_down, change = await w.state(a.address, State.DOWN, killed)
    assert change.cause.startswith("health: ") and "refused" in change.cause
    down_after = t_down - killed
    # the fall-th failing round decides; the round running at the kill may have probed before it
    assert fall - 1 <= rounds[State.DOWN] - at_kill <= fall
    assert down_after <= fall * INTERVAL + 0.3, down_after
    assert pool.pick() is pool.get(b.address) and pool.pick() is pool.get(b.address)

    await a.start()  # same port
    restarted = time.monotonic()
    at_restart = svc.rounds("web")
    t_ss, _ = await w.state(a.address, State.SLOW_START, restarted)
    back_after = t_ss - restarted
    assert rise - 1 <= rounds[State.SLOW_START] - at_restart <= rise
    assert back_after <= rise * INTERVAL + 0.3, back_after
    assert (rise - 1) * INTERVAL - 0.05 <= back_after
    assert 0 < inst.ramp < 1
    ramps = []
    while inst.state is State.SLOW_START:
        ramps.append(inst.ramp)
        await asyncio.sleep(0.05)  # sampling the ramp while it moves, not synchronising
    t_up, change = await w.state(a.address, State.UP, t_ss)
    assert change.cause.startswith("slow start done")
    assert slow - 0.01 <= t_up - t_ss <= slow + 0.3
    assert ramps == sorted(ramps) and ramps[-1] > ramps[0]
    assert inst.ramp == 1.0 and inst.effective_weight == inst.weight
    print(
        f"down after {down_after:.3f}s (fall x interval = {fall * INTERVAL:.1f}s), "
        f"slow-start after {back_after:.3f}s (rise x interval = {rise * INTERVAL:.1f}s), "
        f"up {t_up - t_ss:.3f}s later (slow_start = {slow}s)"
    )


async def test_http_check_wants_the_expected_status_and_tcp_only_a_connection(backends, running) -> None:
    a, b = await backends.new(), await backends.new()
    cfg = config(
        [
            {
                "name": "h",
                "instances": [{"address": a.address}, {"address": b.address}],
                "health": {
                    "type": "http",
                    "path": "/ready",
                    "expect_status": 204,
                    "interval": INTERVAL,
                    "rise": 1,
                    "fall": 1,
                },
            },
            {
                "name": "t",
                "instances": [{"address": a.address}],
                "health": {"type": "tcp", "interval": INTERVAL, "rise": 1, "fall": 1},
            },
        ]
    )
    a.status = 500
    b.status = 204
    t0 = time.monotonic()
    rt, svc = await running(cfg)
    w = Watcher(rt.pools["h"])
    _, change = await w.state(a.address, State.DOWN, t0)
    assert change.cause == "health: http status 500, expected 204"
    assert rt.pools["h"].get(b.address).state is State.UP
    assert rt.pools["t"].get(a.address).state is State.UP  # tcp: accepting is enough
    a.status = 204
    _, change = await w.state(a.address, State.UP, t0)  # no slow_start: straight to up
    assert change.cause == "health: http status 204"
    d = svc.describe_pool("h")
    assert d["check"]["type"] == "http" and d["check"]["path"] == "/ready"
    assert d["instances"][a.address]["healthy"] is True


async def test_passive_ejection_grows_and_ends(backends, running) -> None:
    addrs = [f"127.0.0.1:{9100 + i}" for i in range(4)]
    cfg = config(
        [
            {
                "name": "web",
                "instances": [{"address": x} for x in addrs],
                "outlier": {
                    "consecutive_failures": 3,
                    "ejection": 0.2,
                    "max_ejection": 0.5,
                    "max_ejected_percent": 50,
                },
            }
        ]
    )
    rt, svc = await running(cfg)
    pool = rt.pools["web"]
    w = Watcher(pool)
    a = pool.get(addrs[0])
    lengths = []
    for _ in range(3):
        pool.report(a, False)
        pool.report(a, True)  # a success breaks the run
        for _ in range(3):
            pool.report(a, False)
        assert a.state is State.DOWN
        t_out, change = w.changes[-1]
        assert change.cause.startswith("ejected: 3 consecutive failures")
        t_in, change = await w.state(a.address, State.UP, t_out)
        assert change.cause == "ejection over"
        lengths.append(t_in - t_out)
    # ejection x n, capped at max_ejection: 0.2, 0.4, 0.5 (each plus up to a tick)
    for got, want in zip(lengths, (0.2, 0.4, 0.5), strict=True):
        assert want - 0.01 <= got <= want + 0.15, lengths
    # at most 50% of 4 ejected at once; the third one stays in
    for inst in list(pool)[:3]:
        for _ in range(3):
            pool.report(inst, False)
    assert [i.state for i in pool] == [State.DOWN, State.DOWN, State.UP, State.UP]
    assert svc.describe_pool("web")["instances"][addrs[0]]["ejected_for"] > 0


async def test_operator_states_are_left_alone_and_enable_wins_over_an_ejection(backends, running) -> None:
    a, b = await backends.new(), await backends.new()
    cfg = config(
        [
            {
                "name": "web",
                "instances": [{"address": a.address}, {"address": b.address}],
                "health": {"type": "tcp", "interval": INTERVAL, "rise": 1, "fall": 1},
                "outlier": {"consecutive_failures": 2, "ejection": 30},
            }
        ]
    )
    rt, svc = await running(cfg)
    pool = rt.pools["web"]
    w = Watcher(pool)
    ia, ib = pool.get(a.address), pool.get(b.address)
    pool.apply(ia, Event.OPERATOR_MAINT, "operator: maint")
    pool.apply(ib, Event.OPERATOR_DRAIN, "operator: drain")
    t0 = time.monotonic()
    await a.stop()
    await b.stop()
    await svc.wait_rounds("web", 2)  # the first may have started before the kill
    assert svc.is_healthy("web", ia) is False and svc.is_healthy("web", ib) is False
    assert ia.state is State.MAINT and ib.state is State.DRAINING
    # an operator enabling a dead instance: the next failed check takes it down again
    pool.apply(ia, Event.OPERATOR_ENABLE, "operator: enable")
    assert ia.state is State.UP
    _, change = await w.state(a.address, State.DOWN, t0)
    assert change.cause.startswith("health: ")
    # draining because the instance said so (drain signal) is not the operator's: dead -> down
    pool.apply(ib, Event.OPERATOR_ENABLE, "operator: enable")
    pool.apply(ib, Event.DRAIN_SIGNAL, "drain signal")
    assert ib.state is State.DRAINING
    await w.state(b.address, State.DOWN, t0)
    # both back: readmitted by their checks
    t_back = time.monotonic()
    await a.start()
    await b.start()
    await w.state(a.address, State.UP, t_back)
    await w.state(b.address, State.UP, t_back)
    # ejected; `enable` does not lift down, but maint then enable does, and ends the ejection
    pool.report(ia, False)
    pool.report(ia, False)
    assert ia.state is State.DOWN and svc.describe_pool("web")["instances"][a.address]["ejected_for"] > 25
    assert pool.apply(ia, Event.OPERATOR_ENABLE, "operator: enable") is None
    pool.apply(ia, Event.OPERATOR_MAINT, "operator: maint")
    pool.apply(ia, Event.OPERATOR_ENABLE, "operator: enable")
    assert ia.state is State.UP
    assert svc.describe_pool("web")["instances"][a.address]["ejected_for"] is None
    t1 = time.monotonic()
    await svc.wait_rounds("web", 3)  # several check rounds pass and it stays up
    assert ia.state is State.UP and all(t < t1 or c.address != a.address for t, c in w.changes)


async def test_follows_reloads(backends, running) -> None:
    a = await backends.new()
    first = config([{"name": "one", "instances": [{"address": a.address}]}])
    rt, svc = await running(first)
    second = config(
        [
            {
                "name": "one",
                "instances": [{"address": a.address}],
                "health": {"type": "http", "interval": INTERVAL, "rise": 1, "fall": 1},
            },
            {
                "name": "two",
                "instances": [{"address": a.address}],
                "health": {"type": "tcp", "interval": INTERVAL, "rise": 1, "fall": 1},
            },
        ]
    )
    from tidegate.control.runtime.pools import reload_pools

    a.status = 500
    rt.pools = reload_pools(rt.pools, second)
    w1 = Watcher(rt.pools["one"])
    t0 = time.monotonic()
    await svc.reload(second, rt.pools)
    await w1.state(a.address, State.DOWN, t0)
    assert svc.describe_pool("two") is not None
    # switching checks off readmits what the checks had taken down
    third = config([{"name": "one", "instances": [{"address": a.address}]}])
    rt.pools = reload_pools(rt.pools, third)
    await svc.reload(third, rt.pools)
    _, change = await w1.state(a.address, State.UP, t0)
    assert change.cause == "health checks off"
    assert svc.describe_pool("two") is None
    assert rt.pools["one"].on_result is not None


async def test_checks_passing_again_end_an_ejection_but_passing_all_along_do_not(backends, running) -> None:
    a, b, c = await backends.new(), await backends.new(), await backends.new()
    cfg = config(
        [
            {
                "name": "web",
                "instances": [{"address": x.address} for x in (a, b, c)],
                "health": {"type": "tcp", "interval": INTERVAL, "rise": 1, "fall": 1},
                "outlier": {"consecutive_failures": 2, "ejection": 30, "max_ejected_percent": 100},
            }
        ]
    )
    rt, svc = await running(cfg)
    pool = rt.pools["web"]
    w = Watcher(pool)
    ia, ib = pool.get(a.address), pool.get(b.address)
    # b: ejected while its checks keep passing: it stays out for its period
    pool.report(ib, False)
    pool.report(ib, False)
    assert ib.state is State.DOWN
    # a: dies (ejected by the failures, then its checks fail), comes back: readmitted by the checks
    t0 = time.monotonic()
    await a.stop()
    pool.report(ia, False)
    pool.report(ia, False)
    assert ia.state is State.DOWN
    await svc.wait_rounds("web", 2)
    assert svc.is_healthy("web", ia) is False
    await a.start()
    _, change = await w.state(a.address, State.UP, t0)
    assert change.cause == "health: tcp connect ok"
    await svc.wait_rounds("web", 2)
    assert ib.state is State.DOWN and svc.describe_pool("web")["instances"][b.address]["ejected_for"] > 25


async def test_a_restart_quicker_than_fall_checks_still_ends_the_ejection(backends, running) -> None:
    """Ejected by the gateway's failures, seen failing by one check only (fewer than `fall`, so
    the checks' verdict never flips), back: `rise` passes after that failure readmit it."""
    a, b = await backends.new(), await backends.new()
    cfg = config(
        [
            {
                "name": "web",
                "instances": [{"address": x.address} for x in (a, b)],
                "health": {"type": "tcp", "interval": INTERVAL, "rise": 2, "fall": 3},
                "outlier": {"consecutive_failures": 2, "ejection": 30, "max_ejected_percent": 100},
            }
        ]
    )
    rt, svc = await running(cfg)
    pool = rt.pools["web"]
    w = Watcher(pool)
    ia = pool.get(a.address)
    t0 = time.monotonic()
    await a.stop()
    pool.report(ia, False)
    pool.report(ia, False)
    assert ia.state is State.DOWN
    await svc.wait_rounds("web", 1)
    assert svc.is_healthy("web", ia) is True  # one failure: the verdict has not flipped
    await a.start()
    await w.state(a.address, State.UP, t0)
    assert svc.describe_pool("web")["instances"][a.address]["ejected_for"] is None
