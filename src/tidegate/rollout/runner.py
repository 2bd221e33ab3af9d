"""The rolling upgrade's shell: runs one phase machine (machine.py) per instance, batch by batch.

It performs each command against the admin API (drain, enable, weight, figures), the instance's
supervisor (restart, its view of the process) and the instance itself (health probes), and feeds
the outcome back. Batches run one after the other; within a batch the instances go in parallel.
A failure stops the rollout after the batch it happened in (the others in that batch finish, so
none is left half-way) and leaves the pool serving.

Why the health phase probes the instance itself rather than reading the gateway's state: while an
instance is drained, its state in the admin API stays "draining" whatever its checks say — the
operator's word wins — so the API cannot tell "passed rise checks". Probing the same path the
active checks use, `rise` times `interval` apart, on a new connection each time, is the same test,
needs nothing more from the health layer, and tells us the version that answered.
"""

from __future__ import annotations

import asyncio
import contextlib
import time
from collections.abc import Callable
from dataclasses import dataclass, field

import httpx

from tidegate.rollout import supervisor_client
from tidegate.rollout.admin_client import AdminClient, AdminError
from tidegate.rollout.machine import (
    AskRestart,
    Command,
    Event,
    Failed,
    Finish,
    InstanceRollout,
    Layer,
    Limits,
    Load,
    Probe,
    Probed,
    ReadLoad,
    Readmit,
    Readmitted,
    ReadState,
    ReadSupervisor,
    RestartAsked,
    Started,
    StateSeen,
    Supervised,
    Wait,
    Waited,
    Withdraw,
    Withdrawn,
)
from tidegate.rollout.plan import RolloutPlan, make_plan
from tidegate.rollout.pool_view import ApiInstance
from tidegate.rollout.supervisor_client import SupervisorError


@dataclass
class Outcome:
    ok: bool
    message: str
    done: list[InstanceRollout] = field(default_factory=list)
    failed: list[InstanceRollout] = field(default_factory=list)
    not_started: list[str] = field(default_factory=list)
    skipped: list[tuple[str, str]] = field(default_factory=list)


Listener = Callable[[InstanceRollout], None]


class Upgrade:
    def __init__(
        self,
        admin: AdminClient,
        pool: str,
        *,
        layer: Layer = Layer.HTTP,
        batch: int = 1,
        limits: Limits | None = None,
        rise: int | None = None,
        interval: float | None = None,
        dns_grace: float = 1.0,
        on_update: Listener | None = None,
    ) -> None:
        self.admin = admin
        self.pool = pool
        self.layer = layer
        self.batch = batch
        self.base_limits = limits or Limits()
        self.rise = rise
        self.interval = interval
        self.dns_grace = dns_grace
        self.on_update = on_update or (lambda r: None)
        self.health_path = "/healthz"
        self.expect_status = 200
        self.probe_timeout = 1.0
        self._probe_http = httpx.AsyncClient(limits=httpx.Limits(max_keepalive_connections=0))

    async def plan(self) -> RolloutPlan:
        view = await self.admin.pool(self.pool)
        health = view.health
        self.health_path = str(health.get("path", self.health_path))
        status = health.get("expect_status")
        self.expect_status = status if isinstance(status, int) else 200
        return make_plan(
            view,
            self.layer,
            self.batch,
            self.base_limits,
            rise=self.rise,
            interval=self.interval,
            dns_grace=self.dns_grace,
        )

    async def run(self, plan: RolloutPlan) -> Outcome:
        outcome = Outcome(True, "", skipped=list(plan.skipped))
        try:
            for i, group in enumerate(plan.batches):
                rollouts = [InstanceRollout(inst.address, self.layer, plan.limits) for inst in group]
                for r in rollouts:
                    self.on_update(r)
                await asyncio.gather(*(self._one(r, inst) for r, inst in zip(rollouts, group, strict=True)))
                for r in rollouts:
                    (outcome.done if r.outcome is not None and r.outcome.ok else outcome.failed).append(r)
                if outcome.failed:
                    outcome.ok = False
                    outcome.not_started = [inst.address for g in plan.batches[i + 1 :] for inst in g]
                    break
        finally:
            await self._probe_http.aclose()
        if outcome.ok:
            outcome.message = f"all {len(outcome.done)} instances of pool {self.pool!r} upgraded"
        else:
            reasons = "; ".join(r.outcome.message for r in outcome.failed if r.outcome is not None)
            left = f"; not started: {', '.join(outcome.not_started)}" if outcome.not_started else ""
            outcome.message = (
                f"rollout of pool {self.pool!r} stopped: {reasons}. {len(outcome.done)} upgraded{left}"
            )
        return outcome

    async def _one(self, rollout: InstanceRollout, inst: ApiInstance) -> None:
        supervisor = inst.supervisor or ""
        version = None
        with contextlib.suppress(SupervisorError):  # if it is really unreachable, the restart says so
            version = (await supervisor_client.instance(supervisor, inst.address)).get("version")
        event: Event = Started(time.monotonic(), inst.weight, version)
        while True:
            command = rollout.step(event)
            self.on_update(rollout)
            if isinstance(command, Finish):
                return
            event = await self._perform(command, inst, supervisor)

    async def _perform(self, command: Command, inst: ApiInstance, supervisor: str) -> Event:
        address = inst.address
        try:
            if isinstance(command, Wait):
                await asyncio.sleep(max(0.0, command.seconds))
                return Waited(time.monotonic())
            if isinstance(command, Withdraw):
                if command.layer is Layer.LVS:
                    await self.admin.set_weight(self.pool, address, 0)
                else:
                    await self.admin.set_state(self.pool, address, "drain")
                return Withdrawn(time.monotonic())
            if isinstance(command, ReadLoad):
                pool = await self.admin.pool(self.pool)
                view = pool.get(address)
                if view is None:
                    return Failed(time.monotonic(), f"{address} is no longer in pool {self.pool!r}")
                if command.layer is Layer.LVS:
                    count = view.lvs_connections()
                elif command.layer is Layer.DNS:
                    count = 1 if pool.answered_for(view) else 0
                else:
                    count = view.connections
                return Load(time.monotonic(), count)
            if isinstance(command, AskRestart):
                generation = await supervisor_client.restart(supervisor, address)
                return RestartAsked(time.monotonic(), generation)
            if isinstance(command, ReadSupervisor):
                s = await supervisor_client.instance(supervisor, address)
                return Supervised(
                    time.monotonic(),
                    str(s.get("state")),
                    int(s.get("generation") or 0),
                    s.get("version"),
                    s.get("last_exit"),
                    int(s.get("crashes") or 0),
                )
            if isinstance(command, ReadState):
                view = (await self.admin.pool(self.pool)).get(address)
                if view is None:
                    return Failed(time.monotonic(), f"{address} is no longer in pool {self.pool!r}")
                return StateSeen(time.monotonic(), view.state, view.health_detail())
            if isinstance(command, Probe):
                return await self._probe(address)
            if isinstance(command, Readmit):
                if command.layer is Layer.LVS:
                    await self.admin.set_weight(self.pool, address, command.weight)
                else:
                    await self.admin.set_state(self.pool, address, "enable")
                return Readmitted(time.monotonic())
        except (AdminError, SupervisorError) as exc:
            return Failed(time.monotonic(), str(exc))
        raise AssertionError(f"unknown command {command!r}")

    async def _probe(self, address: str) -> Probed:
        url = f"http://{address}{self.health_path}"
        try:
            resp = await self._probe_http.get(url, timeout=self.probe_timeout)
        except httpx.HTTPError as exc:
            detail = type(exc).__name__
            if isinstance(exc, httpx.ConnectError):
                detail = "connection refused"
            elif isinstance(exc, httpx.TimeoutException):
                detail = f"no answer within {self.probe_timeout:g} s"
            return Probed(time.monotonic(), False, detail)
        return Probed(
            time.monotonic(),
            resp.status_code == self.expect_status,
            f"{resp.status_code}",
            resp.headers.get("tidegate-version"),
        )
