"""The health service: active checks, passive outlier detection and slow-start, per pool.

One per process; the runtime makes it whenever the config has pools, and hands it every reload
(new pools, instances and health settings apply at once; check verdicts and ejections of
instances that stay are kept). The decisions are pure (`rise_fall.py`, `outlier.py`,
`verdict.py`, and the state machine in balancing/transitions.py); this module runs the probes
on their interval, feeds the results in, applies the events that come out to the pools, and
drives the pools' slow-start ramps (`Pool.tick`).

An instance is held `down` while its active checks fail or the outlier detector has ejected it,
and readmitted (through `slow-start` when the pool has a slow-start period) once neither holds.
`maint` and an operator's `draining` are left alone (the state machine ignores health there). An
operator's `enable` (from `maint` or `draining`) ends an ejection early, but the next failed
check takes the instance down again. Active checks that pass again after failing (`rise` passes:
the instance was dead and is back) end an ejection too; an ejection while the checks never
stopped passing (the app fails real requests, not its health endpoint) runs its full period.
"""

from __future__ import annotations

import asyncio
import contextlib
import logging
from collections.abc import Mapping
from dataclasses import dataclass, field
from typing import Any

from tidegate.balancing.instance import Instance
from tidegate.balancing.pool import OPERATOR, Pool, StateChange
from tidegate.balancing.transitions import Event
from tidegate.config.model import Config, HealthConfig, PoolConfig
from tidegate.health.outlier import OutlierDetector, PassiveHook
from tidegate.health.probes import ProbeResult, probe_http, probe_tcp
from tidegate.health.rise_fall import RiseFall
from tidegate.health.verdict import event_for
from tidegate.service import Host

log = logging.getLogger("tidegate.health")

TICK = 0.05  # seconds between slow-start ramp steps and ejection expiry checks


@dataclass(eq=False)
class _Watch:
    """What the service knows about one pool."""

    pool: Pool
    cfg: PoolConfig
    detector: OutlierDetector
    checks: dict[Instance, RiseFall] = field(default_factory=dict)
    last: dict[Instance, ProbeResult] = field(default_factory=dict)
    # Ejected instances an active check saw failing: passes counted since. A restart can be
    # quicker than `fall` checks, so the verdict never flips; this still sees "dead, then back".
    revival: dict[Instance, int] = field(default_factory=dict)
    task: asyncio.Task[None] | None = None
    rounds: int = 0  # check rounds completed
    round_done: asyncio.Event = field(default_factory=asyncio.Event)

    @property
    def checking(self) -> bool:
        return self.cfg.health.type != "none"

    def check_of(self, inst: Instance) -> RiseFall:
        rf = self.checks.get(inst)
        if rf is None:
            hc = self.cfg.health
            rf = self.checks[inst] = RiseFall(hc.rise, hc.fall)
        return rf


class HealthService:
    name = "health"

    def __init__(self, config: Config, runtime: Host) -> None:
        self._runtime = runtime
        self._config = config
        self._watches: dict[str, _Watch] = {}
        self._causes: dict[Instance, str] = {}  # the cause of each instance's current state
        self._subscribed: set[int] = set()
        self._tick_task: asyncio.Task[None] | None = None
        self._loop: asyncio.AbstractEventLoop | None = None

    # --- Service --------------------------------------------------------------------------
    async def start(self) -> None:
        self._loop = asyncio.get_running_loop()
        self._apply(self._config, self._runtime.pools)
        self._tick_task = asyncio.create_task(self._tick_loop(), name="health-tick")

    async def reload(self, config: Config, pools: Mapping[str, Pool]) -> None:
        self._config = config
        self._apply(config, pools)

    async def stop(self, grace: float) -> None:
        tasks = [w.task for w in self._watches.values() if w.task is not None]
        if self._tick_task is not None:
            tasks.append(self._tick_task)
        for w in self._watches.values():
            w.pool.on_result = None
        for t in tasks:
            t.cancel()
        for t in tasks:
            with contextlib.suppress(asyncio.CancelledError):
                await t

    def describe_pool(self, pool: str) -> dict[str, Any] | None:
        w = self._watches.get(pool)
        if w is None:
            return None
        hc, oc = w.cfg.health, w.cfg.outlier
        now = self._now()
        instances: dict[str, dict[str, Any]] = {}
        for inst in w.pool:
            rf = w.checks.get(inst)
            last = w.last.get(inst)
            until = w.detector.ejected_until(inst)
            instances[inst.address] = {
                "healthy": rf.healthy if (rf is not None and w.checking) else None,
                "last_check": last.detail if last is not None else None,
                "consecutive_failures": w.detector.consecutive_failures(inst),
                "ejected_for": round(until - now, 3) if until is not None else None,
                "cause": self._causes.get(inst),
            }
        return {
            "check": {
                "type": hc.type,
                "path": hc.path if hc.type == "http" else None,
                "interval": hc.interval,
                "timeout": hc.timeout,
                "rise": hc.rise,
                "fall": hc.fall,
            },
            "outlier": {
                "consecutive_failures": oc.consecutive_failures,
                "ejection": oc.ejection,
                "max_ejection": oc.max_ejection,
                "max_ejected_percent": oc.max_ejected_percent,
            },
            "slow_start": w.pool.slow_start,
            "instances": instances,
        }

    def is_healthy(self, pool: str, inst: Instance) -> bool | None:
        """The active checks' verdict on `inst`; None when its pool has no active checks."""
        w = self._watches.get(pool)
        if w is None or not w.checking:
            return None
        rf = w.checks.get(inst)
        return rf.healthy if rf is not None else None

    def rounds(self, pool: str) -> int:
        """How many rounds of active checks of `pool` have completed."""
        w = self._watches.get(pool)
        return w.rounds if w is not None else 0

    def unchecked_pools(self) -> list[str]:
        """Pools with active checks whose first round has not completed (/readyz waits on them)."""
        return [name for name, w in self._watches.items() if w.checking and w.rounds == 0]

    async def wait_rounds(self, pool: str, n: int = 1) -> None:
        """Return once `n` more rounds of active checks of `pool` have completed (for tests and
        tools that must act on fresh verdicts)."""
        for _ in range(n):
            await self._watches[pool].round_done.wait()

    # --- a self-upgrade hands the verdicts to the new process (control/runtime/handover_state.py)
    def verdicts(self) -> dict[str, dict[str, dict[str, Any]]]:
        """Per pool and instance: the checks' verdict, the ejection incident and its time left."""
        now = self._now()
        out: dict[str, dict[str, dict[str, Any]]] = {}
        for name, w in self._watches.items():
            mine = out[name] = {}
            for inst in w.pool:
                rf = w.checks.get(inst)
                ejections, until = w.detector.incident(inst)
                mine[inst.address] = {
                    "healthy": rf.healthy if rf is not None else True,
                    "ejections": ejections,
                    "ejected_for": None if until is None else max(0.0, until - now),
                }
        return out

    def adopt(self, verdicts: Mapping[str, Mapping[str, Mapping[str, Any]]]) -> None:
        """Start from the previous process's verdicts (called right after start, before the first
        check round): a dead instance stays out until `rise` checks pass, an ejection runs out."""
        now = self._now()
        for name, by_address in verdicts.items():
            w = self._watches.get(name)
            if w is None:
                continue
            hc = w.cfg.health
            for address, v in by_address.items():
                inst = w.pool.get(address)
                if inst is None:
                    continue
                if w.checking:
                    w.checks[inst] = RiseFall(hc.rise, hc.fall, bool(v["healthy"]))
                left = v.get("ejected_for")
                w.detector.resume(inst, int(v.get("ejections", 0)), None if left is None else now + left)

    # --- following the config -------------------------------------------------------------
    def _apply(self, config: Config, pools: Mapping[str, Pool]) -> None:
        wanted = {pc.name: pc for pc in config.pools if pc.name in pools}
        for name, gone in list(self._watches.items()):
            if name not in wanted or pools[name] is not gone.pool:
                self._drop(gone)
                del self._watches[name]
        for name, pc in wanted.items():
            pool = pools[name]
            self._subscribe(pool)
            w = self._watches.get(name)
            if w is None:
                w = self._watches[name] = _Watch(pool, pc, OutlierDetector(pc.outlier))
            else:
                old = w.cfg
                w.cfg = pc
                w.detector.cfg = pc.outlier
                if (old.health.rise, old.health.fall) != (pc.health.rise, pc.health.fall):
                    for inst, rf in list(w.checks.items()):
                        w.checks[inst] = RiseFall(pc.health.rise, pc.health.fall, rf.healthy)
                if old.health != pc.health and w.task is not None:
                    w.task.cancel()
                    w.task = None
            pool.on_result = self._passive_hook(w) if w.detector.enabled else None
            if w.checking and w.task is None:
                w.task = asyncio.create_task(self._check_loop(w), name=f"health-{name}")
            if not w.checking:
                w.checks.clear()
                w.last.clear()
                for inst in w.pool:
                    ejected = w.detector.is_ejected(inst)
                    self._reconcile(w, inst, None if ejected else "health checks off")

    def _drop(self, w: _Watch) -> None:
        if w.task is not None:
            w.task.cancel()
        w.pool.on_result = None

    def _subscribe(self, pool: Pool) -> None:
        if id(pool) in self._subscribed:
            return
        self._subscribed.add(id(pool))
        pool.subscribe(lambda change: self._on_change(pool, change))

    # --- state changes, from anyone ---------------------------------------------------------
    def _on_change(self, pool: Pool, change: StateChange) -> None:
        inst = pool.get(change.address)
        if inst is None:
            return
        self._causes[inst] = change.cause
        if change.cause.startswith(OPERATOR) and change.new.takes_new_work:
            w = self._watches.get(pool.name)
            if w is not None:
                w.detector.pardon(inst, self._now())

    # --- active checks ----------------------------------------------------------------------
    async def _check_loop(self, w: _Watch) -> None:
        loop = asyncio.get_running_loop()
        hc = w.cfg.health
        while True:
            started = loop.time()
            members = list(w.pool)
            results = await asyncio.gather(*(_probe(hc, inst) for inst in members))
            for inst, res in zip(members, results, strict=True):
                if w.pool.get(inst.address) is not inst:
                    continue  # removed while we probed
                w.last[inst] = res
                flipped = w.check_of(inst).observe(res.ok)
                if flipped or self._revived(w, inst, res.ok):
                    # Seen dead, now back (a restart): an ejection from the same death is moot
                    # (Envoy's successful_active_health_check_uneject_host, for a rise).
                    w.detector.pardon(inst, self._now())
                if flipped is not None:
                    log.info(
                        "pool %s instance %s: health check %s (%s)",
                        w.pool.name,
                        inst.address,
                        "passing" if flipped else "failing",
                        res.detail,
                    )
                self._reconcile(w, inst)
            _prune(w.checks, members)
            _prune(w.last, members)
            _prune(w.revival, members)
            w.rounds += 1
            w.round_done.set()
            w.round_done = asyncio.Event()
            await asyncio.sleep(max(0.0, hc.interval - (loop.time() - started)))

    @staticmethod
    def _revived(w: _Watch, inst: Instance, ok: bool) -> bool:
        """`rise` passes in a row after a failed check, all during one ejection."""
        if not w.detector.is_ejected(inst):
            w.revival.pop(inst, None)
            return False
        if not ok:
            w.revival[inst] = 0
            return False
        if inst not in w.revival:
            return False  # never seen failing: the ejection runs its period
        w.revival[inst] += 1
        if w.revival[inst] < w.cfg.health.rise:
            return False
        del w.revival[inst]
        return True

    # --- passive detection ------------------------------------------------------------------
    def _passive_hook(self, w: _Watch) -> PassiveHook:
        detector = w.detector

        def on_failure(inst: Instance) -> None:
            ejection = detector.failure(inst, self._now(), list(w.pool))
            if ejection is not None:
                self._reconcile(w, inst, ejection.cause)

        return PassiveHook(detector, on_failure)

    # --- the tick: ejections that end, slow-start ramps ---------------------------------------
    async def _tick_loop(self) -> None:
        while True:
            await asyncio.sleep(TICK)
            self.tick(self._now())

    def tick(self, now: float) -> None:
        for w in list(self._watches.values()):
            for inst in w.detector.expired(now):
                if w.pool.get(inst.address) is inst:
                    self._reconcile(w, inst, "ejection over", ejection_ended=True)
            w.detector.forget_missing(list(w.pool))
            w.pool.tick(w.pool.clock())
        live = {i for w in self._watches.values() for i in w.pool}
        _prune(self._causes, live)

    # --- applying verdicts --------------------------------------------------------------------
    def _reconcile(
        self, w: _Watch, inst: Instance, cause: str | None = None, *, ejection_ended: bool = False
    ) -> None:
        rf = w.checks.get(inst) if w.checking else None
        healthy = rf is None or rf.healthy
        event = event_for(inst.state, healthy, w.detector.is_ejected(inst), ejection_ended)
        if event is None:
            return
        last = w.last.get(inst)
        if event is Event.HEALTH_FAILED or (cause is None and last is not None):
            cause = f"health: {last.detail if last is not None else 'failing'}"
        elif cause is None:
            cause = "ejected" if event is Event.EJECTED else "healthy"
        w.pool.apply(inst, event, cause)

    def _now(self) -> float:
        loop = self._loop or asyncio.get_running_loop()
        return loop.time()


async def _probe(hc: HealthConfig, inst: Instance) -> ProbeResult:
    if hc.type == "http":
        return await probe_http(inst.host, inst.port, hc.path, hc.expect_status, hc.timeout)
    return await probe_tcp(inst.host, inst.port, hc.timeout)


def _prune(d: dict[Instance, Any], live: Any) -> None:
    keep = set(live)
    for inst in [i for i in d if i not in keep]:
        del d[inst]


def make_service(config: Config, runtime: Host) -> HealthService:
    return HealthService(config, runtime)
