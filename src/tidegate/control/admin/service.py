"""The admin service: the admin API, /metrics and the dashboard on their own listener.

Served by uvicorn inside the runtime's event loop (its signal capture switched off: the runtime
owns SIGHUP/SIGTERM). The listener is separate from every traffic listener and binds loopback
unless the config says otherwise. Also owns the IOPS meter (sampled every half second and at
every read) and registers the per-instance Prometheus collector in the runtime's registry.

Instances added through the API are registrations, like a service registry's, not edits of the
config file: they survive a SIGHUP reload (a reload re-reads the file's instances and keeps the
registered ones; an address the file now lists becomes the file's). They do not survive a
restart: whoever registered them (`tidegate serve --register`) registers again. Operator states
(drain, maint) survive reloads too; weights of the file's instances are re-read from the file,
as with HAProxy's runtime API, whose changes last until the configuration is loaded again.
"""

from __future__ import annotations

import asyncio
import contextlib
import ipaddress
import logging
import socket
import time
from collections.abc import Awaitable, Iterator, Mapping
from typing import TYPE_CHECKING, Any

import uvicorn

from tidegate.balancing.instance import Instance
from tidegate.balancing.pool import Pool, StateChange
from tidegate.balancing.state import State
from tidegate.config.model import AdminConfig, Config, split_address
from tidegate.control.admin import operations as ops
from tidegate.control.admin.app import AdminApp
from tidegate.control.admin.events import EventLog, event_json
from tidegate.control.admin.operations import ApiError
from tidegate.control.admin.views import instance_json, pool_json
from tidegate.control.registry.layout import Hold
from tidegate.control.registry.service import RegistryOutcomeUnknown, RegistryUnavailable
from tidegate.observe.counters import Counters
from tidegate.observe.history import History
from tidegate.observe.iops import IopsMeter
from tidegate.observe.prometheus import InstanceCollector, InstanceView

if TYPE_CHECKING:
    from tidegate.control.admin.bodies import NewInstance
    from tidegate.control.registry.service import EtcdRegistry
    from tidegate.control.runtime.process import Runtime

log = logging.getLogger("tidegate.admin")
# Lifecycle lines scripts wait for ("tidegate: ready"): the process log, logger "tidegate".
announce = logging.getLogger("tidegate")

SAMPLE_EVERY = 0.5  # seconds between IOPS samples
HISTORY_EVERY = 1.0  # seconds between points of the dashboard's charts (observe/history.py)
REMOVAL_POLL = 0.05  # seconds between looks at a removed instance's in-flight count


class _Server(uvicorn.Server):
    @contextlib.contextmanager
    def capture_signals(self) -> Iterator[None]:
        yield  # the runtime handles signals; uvicorn's own handlers would steal SIGTERM


class AdminService:
    name = "admin"

    def __init__(
        self, cfg: AdminConfig, runtime: Runtime, sockets: list[socket.socket] | None = None
    ) -> None:
        self.cfg = cfg
        self.sockets = sockets  # bound already (by a reload), else start() binds
        self.runtime = runtime
        self.token = cfg.token
        self.iops = IopsMeter()
        self.registry = runtime.metrics
        # Addresses added through the API, per pool; the runtime's reload keeps them.
        self.registered = runtime.registered
        self._collector = InstanceCollector(self._views, [s.value for s in State])
        self._removals: dict[tuple[str, str], asyncio.Task[None]] = {}
        self._server: _Server | None = None
        self._serving: asyncio.Task[None] | None = None
        self._sampler: asyncio.Task[None] | None = None
        self._historian: asyncio.Task[None] | None = None
        self.history = History()
        self.events = EventLog()
        self._members: dict[tuple[str, str], str] = {}  # (pool, address) → state, at the last look
        self._looked = False
        self._subscribed: set[int] = set()
        self.address: tuple[str, int] | None = None

    # --- Service --------------------------------------------------------------------------
    async def start(self) -> None:
        self.registry.register(self._collector)
        (sock,), self.sockets = self.sockets or bind_sockets(self.cfg), None
        host, port = sock.getsockname()[:2]
        self.address = (host, port)
        config = uvicorn.Config(
            AdminApp(self),
            lifespan="off",
            log_config=None,
            log_level="warning",
            access_log=False,
            http="httptools",
            ws="none",
            server_header=False,
            timeout_graceful_shutdown=5,
        )
        self._server = _Server(config)
        self._serving = asyncio.create_task(self._server.serve(sockets=[sock]), name="admin-http")
        while not self._server.started:
            if self._serving.done():
                self._serving.result()  # raises what stopped it
            await asyncio.sleep(0.005)
        shown = f"[{host}]" if ":" in host else host
        announce.info(f"admin listening on {shown}:{port}")
        self._sampler = asyncio.create_task(self._sample_loop(), name="admin-iops")
        self._follow(self.pools)
        self._historian = asyncio.create_task(self._history_loop(), name="admin-history")

    async def reload(self, config: Config, pools: Mapping[str, Pool]) -> None:
        self._follow(pools)
        if config.admin is not None:
            if config.admin.listen != self.cfg.listen:
                log.warning("admin.listen changes only on restart; still on %s", self.cfg.listen)
            self.token = config.admin.token
            self.cfg = config.admin.model_copy(update={"listen": self.cfg.listen})

    async def stop_listening(self) -> None:
        """An [admin] whose listen moved, or a self-upgrade's old process: the listener closes
        now (uvicorn's own shutdown would leave it accepting until its next tick), and the new
        service registers a collector of the same name as this one's."""
        if self._server is not None:
            for server in getattr(self._server, "servers", ()):
                server.close()
            self._server.should_exit = True
        with contextlib.suppress(KeyError):
            self.registry.unregister(self._collector)

    async def stop(self, grace: float) -> None:
        for task in [*self._removals.values(), self._sampler, self._historian]:
            if task is not None:
                task.cancel()
        if self._server is not None and self._serving is not None:
            self._server.should_exit = True
            with contextlib.suppress(asyncio.CancelledError):
                await self._serving
        with contextlib.suppress(KeyError):
            self.registry.unregister(self._collector)

    # --- what the API reads -----------------------------------------------------------------
    @property
    def pools(self) -> Mapping[str, Pool]:
        return self.runtime.pools

    @property
    def default_grace(self) -> float:
        return self.runtime.grace

    def _sample(self) -> None:
        loop = asyncio.get_running_loop()
        self.iops.sample(loop.time(), (i.counters for p in self.pools.values() for i in p))

    async def _sample_loop(self) -> None:
        while True:
            self._sample()
            await asyncio.sleep(SAMPLE_EVERY)

    # --- the dashboard's history and events ---------------------------------------------------
    def _follow(self, pools: Mapping[str, Pool]) -> None:
        """Hear the state changes of every pool (a pool's listeners run only on a change)."""
        for pool in pools.values():
            if id(pool) not in self._subscribed:
                self._subscribed.add(id(pool))
                pool.subscribe(self._on_change)

    def _on_change(self, change: StateChange) -> None:
        key = (change.pool, change.address)
        self.events.record(time.time(), *key, change.old.value, change.new.value, change.cause)
        if key in self._members:  # (a newcomer is for the next look to announce)
            self._members[key] = change.new.value

    async def _history_loop(self) -> None:
        while True:
            self._look()
            await asyncio.sleep(HISTORY_EVERY)

    def _look(self) -> None:
        """One point of history, and who joined or left a pool since the last look."""
        now = time.time()
        counters: dict[tuple[str, str], Counters] = {}
        states: dict[tuple[str, str], str] = {}
        for name, pool in list(self.pools.items()):
            for inst in pool:
                counters[(name, inst.address)] = inst.counters
                states[(name, inst.address)] = inst.state.value
        self.history.sample(now, counters)
        for key, state in states.items():
            if key not in self._members:
                if self._looked:
                    self.events.record(now, *key, None, state, "added")
                else:
                    self.events.seen(now, *key)  # there from the start
        for key, state in self._members.items():
            if key not in states:
                self.events.record(now, *key, state, None, "removed")
        self._members = states
        self._looked = True

    def history_json(self, since: float | None) -> dict[str, Any]:
        return {"interval": HISTORY_EVERY, **self.history.since(since)}

    def events_json(self, pool: str | None, address: str | None, limit: int) -> dict[str, Any]:
        events = self.events.recent(pool, address, limit)
        return {"events": [event_json(e) for e in events], "recorded": self.events.recorded}

    def _views(self) -> Iterator[InstanceView]:
        for name, pool in list(self.pools.items()):
            for i in pool:
                yield InstanceView(
                    name,
                    i.address,
                    i.counters,
                    i.state.value,
                    i.weight,
                    i.effective_weight,
                    self.iops.iops(i.counters),
                )

    def _describe(self, pool: str) -> dict[str, Mapping[str, Any]]:
        out: dict[str, Mapping[str, Any]] = {}
        for svc in self.runtime.services:
            describe = getattr(svc, "describe_pool", None)
            if describe is None:
                continue
            facts = describe(pool)
            if facts is None:
                continue
            key, n = svc.name, 0
            while key in out:  # e.g. two http listeners: "http", "http.1"
                n += 1
                key = f"{svc.name}.{n}"
            out[key] = facts
        return out

    def pools_json(self) -> list[dict[str, Any]]:
        self._sample()
        return [self._pool_json(p) for p in self.pools.values()]

    def pool_json(self, pool: Pool) -> dict[str, Any]:
        self._sample()
        return self._pool_json(pool)

    def _pool_json(self, pool: Pool) -> dict[str, Any]:
        in_state = {i.address: self._in_state(pool, i) for i in pool}
        registered = self.registered.get(pool.name, ())
        return pool_json(pool, self.iops, registered, self._describe(pool.name), in_state)

    def _in_state(self, pool: Pool, inst: Instance) -> float | None:
        since = self.events.since(pool.name, inst.address)
        return None if since is None else round(max(0.0, time.time() - since), 3)

    def instance_json(self, pool: Pool, inst: Instance) -> dict[str, Any]:
        self._sample()
        origin = "api" if inst.address in self.registered.get(pool.name, ()) else "config"
        doc = instance_json(inst, self.iops, origin, self._in_state(pool, inst))
        for service, facts in self._describe(pool.name).items():
            per_instance = facts.get("instances")
            if isinstance(per_instance, Mapping) and inst.address in per_instance:
                doc[service] = per_instance[inst.address]
        return doc

    # --- what the API changes ----------------------------------------------------------------
    # With the etcd registry ([registry] type = "etcd") a change is written there first and
    # applied here once etcd took it (the other processes apply it from their watch); if etcd
    # cannot be reached the call answers 503 and nothing changed; when it did not answer in time,
    # 504: outcome unknown (docs/operations.md, "Several processes").
    @property
    def shared(self) -> EtcdRegistry | None:
        return self.runtime.shared

    async def add_instance(self, pool: Pool, new: NewInstance) -> Instance:
        shared = self.shared
        if shared is None:
            inst = ops.add_instance(pool, new)
            self.registered.setdefault(pool.name, set()).add(inst.address)
        else:
            if pool.get(new.address) is not None:
                raise ApiError(409, f"instance {new.address!r} is already in pool {pool.name!r}")
            await _shared(shared.register(pool.name, new.address, new.weight, new.meta))
            inst = ops.find_instance(pool, new.address)
        log.info("pool %s instance %s: added by operator (weight %d)", pool.name, inst.address, inst.weight)
        return inst

    async def change_state(self, pool: Pool, inst: Instance, action: str, actor: str | None = None) -> None:
        why = f"{action} ({actor})" if actor else action
        shared = self.shared
        if shared is not None:
            hold: Hold | None = "drain" if action == "drain" else "maint" if action == "maint" else None
            await _shared(shared.hold(pool.name, inst.address, hold))
        if action == "drain":
            if shared is None:
                ops.drain(pool, inst, why)
        elif action == "maint":
            if shared is None:
                ops.maint(pool, inst, why)
        else:
            pending = self._removals.pop((pool.name, inst.address), None)
            if pending is not None:
                pending.cancel()  # enable undoes a pending removal
                log.info("pool %s instance %s: removal cancelled by enable", pool.name, inst.address)
            if shared is None:
                ops.enable(pool, inst, why)

    async def set_weight(self, pool: Pool, inst: Instance, weight: int) -> None:
        shared = self.shared
        if shared is None:
            pool.set_weight(inst, weight)
        else:
            await _shared(shared.set_weight(pool.name, inst.address, weight))

    def _shared_owns(self, pool: Pool, inst: Instance) -> EtcdRegistry | None:
        """The registry, when this instance is the registry's (a file instance stays local)."""
        shared = self.shared
        return shared if shared is not None and shared.owns(pool.name, inst.address) else None

    async def remove_instance(self, pool: Pool, inst: Instance, grace: float) -> bool:
        """Drain, then remove once idle (or after `grace`); True when removed already."""
        key = (pool.name, inst.address)
        shared = self._shared_owns(pool, inst)
        if inst.counters.active == 0:
            await self._remove_now(pool, inst, "idle")
            pending = self._removals.pop(key, None)
            if pending is not None:
                pending.cancel()
            return True
        if shared is not None:
            await _shared(shared.hold(pool.name, inst.address, "drain"))  # every process stops sending
        else:
            ops.drain(pool, inst, "remove")  # (a maint instance stays maint: no work either way)
        if key not in self._removals:
            self._removals[key] = asyncio.create_task(self._remove_when_idle(pool, inst, grace))
        return False

    async def _remove_when_idle(self, pool: Pool, inst: Instance, grace: float) -> None:
        loop = asyncio.get_running_loop()
        deadline = loop.time() + grace
        try:
            while inst.counters.active > 0 and loop.time() < deadline:
                await asyncio.sleep(REMOVAL_POLL)
            left = inst.counters.active
            try:
                await self._remove_now(pool, inst, "idle" if left == 0 else f"grace over, {left} in flight")
            except ApiError as exc:
                log.error("pool %s instance %s: not removed: %s", pool.name, inst.address, exc.message)
        finally:
            if self._removals.get((pool.name, inst.address)) is asyncio.current_task():
                del self._removals[(pool.name, inst.address)]

    async def _remove_now(self, pool: Pool, inst: Instance, why: str) -> None:
        if pool.get(inst.address) is not inst:
            return
        shared = self._shared_owns(pool, inst)
        if shared is not None:
            await _shared(shared.forget(pool.name, inst.address))  # removes it here too
        if pool.get(inst.address) is inst:
            pool.remove(inst.address)
        self.registered.get(pool.name, set()).discard(inst.address)
        log.info("pool %s instance %s: removed by operator (%s)", pool.name, inst.address, why)


async def _shared(write: Awaitable[None]) -> None:
    try:
        await write
    except RegistryUnavailable as exc:
        raise ApiError(503, str(exc)) from None
    except RegistryOutcomeUnknown as exc:
        raise ApiError(504, str(exc)) from None


def _bind(listen: str) -> socket.socket:
    host, port = split_address(listen)
    family = socket.AF_INET
    with contextlib.suppress(ValueError):
        if ipaddress.ip_address(host).version == 6:
            family = socket.AF_INET6
    sock = socket.socket(family, socket.SOCK_STREAM)
    sock.setsockopt(socket.SOL_SOCKET, socket.SO_REUSEADDR, 1)
    try:
        sock.bind((host, port))
    except OSError:
        sock.close()
        raise
    sock.listen(1024)
    sock.setblocking(False)
    return sock


def bind_sockets(cfg: AdminConfig) -> list[socket.socket]:
    return [_bind(cfg.listen)]


def make_service(
    cfg: AdminConfig, runtime: Runtime, sockets: list[socket.socket] | None = None
) -> AdminService:
    return AdminService(cfg, runtime, sockets)
