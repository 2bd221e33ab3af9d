"""A `[[tcp]]` listener: the L4 full proxy (the portable analogue of LVS VS/NAT).

Each accepted connection gets an instance from the pool's scheduler and is relayed byte for byte
(relay.py). The service owns what outlives single connections: the listening socket, which
connections run on which instance, the drain grace, the figures, reload and graceful stop.

Drain: an instance that enters `draining` gets no new connections (the scheduler no longer sees
it); the ones it has keep running until they end, or until `drain_grace` after it entered
draining, when they are aborted and counted (`drain_cut`). Going back to up/slow-start before
that cancels the cut. Like nginx `stream` and HAProxy `mode tcp`, a TCP proxy cannot ask a
client to leave politely, so the grace is the operator's bound on how long an upgrade waits.

Time: one sweeper per listener, not a timer per connection. Every `tick` (a quarter of the
shortest of the connect and idle timeouts, between 50 ms and 1 s) it lets each connection check
its connect deadline and idle time (relay.py `Connection.check`) and samples each instance's
`opened` count for its connection rate. A timeout therefore ends a connection up to two ticks
after it is due, never before.
"""

from __future__ import annotations

import asyncio
import logging
import socket
from collections.abc import Mapping
from typing import cast

from tidegate.accepting import AcceptCollector, AcceptGate
from tidegate.balancing.instance import Instance
from tidegate.balancing.pool import Pool, StateChange
from tidegate.balancing.state import State
from tidegate.config.model import Config, TcpConfig
from tidegate.fdlimit import default_max_connections, listeners, open_files
from tidegate.listening import shown, stream_listener
from tidegate.service import Host, Service
from tidegate.tcp import proxy_header
from tidegate.tcp.figures import ListenerFigures
from tidegate.tcp.metrics import TcpCollector
from tidegate.tcp.relay import Connection

log = logging.getLogger("tidegate.tcp")
# Lifecycle lines scripts wait for ("tidegate: ready"): the process log, logger "tidegate".
announce = logging.getLogger("tidegate")

# Write buffer high-water mark per side: past it, reading from the other side pauses. A few
# socket buffers' worth keeps bulk transfers streaming without holding much per connection.
HIGH_WATER = 512 * 1024
BACKLOG = 4096


def _listener_name(tcp_cfg: TcpConfig, runtime: Host) -> tuple[str, int]:
    """The listener's name (Host.listener_name) and its section's position."""
    name, made = runtime.listener_name("tcp")
    index = next((i for i, c in enumerate(runtime.config.tcp) if c is tcp_cfg), made)
    return name, index


def bind_sockets(cfg: TcpConfig) -> list[socket.socket]:
    """The listening sockets of a [[tcp]] section, one per worker (OSError if they cannot bind)."""
    if cfg.workers > 1:
        from tidegate.tcp.worker_kind import KIND

        return [s for socks in KIND.bind(cfg, cfg.workers) for s in socks]
    return [stream_listener(cfg.listen, BACKLOG)]


class TcpService:
    def __init__(self, cfg: TcpConfig, runtime: Host, sockets: list[socket.socket] | None = None) -> None:
        self.name, self.index = _listener_name(cfg, runtime)
        self.sockets = sockets  # bound already (by a reload), else start() binds
        self.runtime = runtime
        self.loop = asyncio.get_running_loop()
        self.now = self.loop.time
        self.high_water = HIGH_WATER
        self.figures = ListenerFigures()
        self.connections: set[Connection] = set()
        self._drain_timers: dict[Instance, asyncio.TimerHandle] = {}
        self._subscribed: set[int] = set()
        self._idle = asyncio.Event()
        self._idle.set()
        self._sweeper: asyncio.Task[None] | None = None
        self.tick = 1.0
        self.gate: AcceptGate | None = None
        self.address = ""
        self._apply(cfg, runtime.pools)
        self._collector = runtime.figures("tcp", TcpCollector)
        self._collector.services.append(self)

    def _apply(self, cfg: TcpConfig, pools: Mapping[str, Pool]) -> None:
        self.cfg = cfg
        # Two descriptors per client (it and its instance), as the default's formula counts.
        self.max_connections = cfg.max_connections or default_max_connections(
            open_files(), listeners(self.runtime.config)
        )
        if self.gate is not None:
            self.gate.max_connections = self.max_connections
        self.pool = pools[cfg.pool]
        self.connect_timeout = cfg.connect_timeout
        self.connect_tries = cfg.connect_tries
        self.idle_timeout = cfg.idle_timeout
        self.drain_grace = cfg.drain_grace
        self.proxy_version = cfg.proxy_protocol
        timeouts = [t for t in (cfg.connect_timeout, cfg.idle_timeout) if t > 0]
        self.tick = min(1.0, max(0.05, min(timeouts, default=4.0) / 4))
        if id(self.pool) not in self._subscribed:
            self._subscribed.add(id(self.pool))
            self.pool.subscribe(self._on_state_change)

    # --- Service ------------------------------------------------------------------------------
    async def start(self) -> None:
        sockets, self.sockets = self.sockets, None
        self.gate = await self._listen(self.cfg, sockets)
        self._sweeper = self.loop.create_task(self._sweep())

    async def _listen(self, cfg: TcpConfig, sockets: list[socket.socket] | None = None) -> AcceptGate:
        (sock,) = sockets or bind_sockets(cfg)
        gate = AcceptGate(
            self.name,
            sock,
            self._serve,
            self.max_connections,
            self.connections.__len__,
            self.runtime.figures("accept", AcceptCollector),
        )
        try:
            await gate.start()
        except BaseException:
            gate.close()
            raise
        self.address = shown(sock)
        announce.info(f"{self.name} listening on {self.address}")
        return gate

    async def _serve(self, sock: socket.socket) -> asyncio.AbstractServer:
        return await self.loop.create_server(self._accept, sock=sock)

    def _accept(self) -> asyncio.Protocol:
        return cast(asyncio.Protocol, Connection(self))

    async def reload(self, config: Config, pools: Mapping[str, Pool]) -> None:
        if self.index >= len(config.tcp):
            log.warning("%s: its [[tcp]] section is gone; it runs on until restart", self.name)
            return
        new = config.tcp[self.index]
        old_listen = self.cfg.listen
        self._apply(new, pools)
        if new.listen != old_listen and self.gate is not None:
            gate = await self._listen(new)
            self.gate.close()
            self.gate = gate

    async def stop_listening(self) -> None:
        if self.gate is not None:
            self.gate.close()

    async def stop(self, grace: float) -> None:
        await self.stop_listening()
        try:
            await self._stop(grace)
        finally:
            if self._sweeper is not None:
                self._sweeper.cancel()
                self._sweeper = None

    async def _stop(self, grace: float) -> None:
        if self in self._collector.services:
            self._collector.services.remove(self)  # a listener gone by reload leaves /metrics
        for timer in self._drain_timers.values():
            timer.cancel()
        self._drain_timers.clear()
        try:
            await asyncio.wait_for(self._idle.wait(), grace)
        except TimeoutError:
            left = list(self.connections)
            log.warning(
                "%s: %d connections still open after %.1fs, closing them", self.name, len(left), grace
            )
            for conn in left:
                conn.cut()
            try:
                await asyncio.wait_for(self._idle.wait(), 5.0)
            except TimeoutError:
                log.error("%s: connections did not close", self.name)

    def open_count(self) -> int:
        return len(self.connections)

    async def wait_idle(self, timeout: float) -> None:
        """Until no connection is open (TimeoutError after `timeout` seconds)."""
        await asyncio.wait_for(self._idle.wait(), timeout)

    def cut_in(self, inst: Instance) -> float | None:
        """Seconds until the connections of a draining `inst` are cut; None if no cut is due."""
        timer = self._drain_timers.get(inst)
        return None if timer is None else max(0.0, timer.when() - self.now())

    def describe_pool(self, pool: str) -> dict[str, object] | None:
        if pool != self.pool.name:
            return None
        now = self.now()
        figs = self.figures
        return {
            "listener": self.name,
            "listen": self.address,
            "connections": len(self.connections),
            "accepted": figs.accepted,
            "unplaced": figs.unplaced,
            "idle_closed": figs.idle_closed,
            "drain_cut": figs.drain_cut,
            "instances": {
                address: {
                    "connections_per_second": round(f.connections_per_second(now), 3),
                    "opened": f.opened,
                    "drain_cut": f.drain_cut,
                }
                for address, f in figs.instances.items()
            },
            "drain_cut_in": {
                inst.address: round(max(0.0, timer.when() - now), 3)
                for inst, timer in self._drain_timers.items()
            },
        }

    async def _sweep(self) -> None:
        loop = self.loop
        while True:
            await asyncio.sleep(self.tick)
            now = loop.time()
            idle = self.idle_timeout
            for conn in list(self.connections):
                conn.check(now, idle)
            for figs in self.figures.instances.values():
                figs.sample(now)

    # --- called by connections (relay.py) -----------------------------------------------------
    def proxy_header(self, client: asyncio.Transport) -> bytes:
        if self.proxy_version == "off":
            return b""
        return proxy_header.encode(
            self.proxy_version, client.get_extra_info("peername"), client.get_extra_info("sockname")
        )

    def accepted(self, conn: Connection) -> None:
        self.figures.accepted += 1
        if not self.connections:
            self._idle.clear()
        self.connections.add(conn)
        if self.gate is not None:
            self.gate.opened()

    def attached(self, conn: Connection, inst: Instance) -> None:
        self.figures.of(inst.address).opened += 1  # the sweeper samples it for the rate

    def unplaced(self, conn: Connection, tried: list[Instance]) -> None:
        self.figures.unplaced += 1
        if tried:
            log.warning(
                "%s: no instance of pool %s could be connected (tried %s)",
                self.name,
                self.pool.name,
                ", ".join(i.address for i in tried),
            )

    def idle_closed(self, conn: Connection) -> None:
        self.figures.idle_closed += 1

    def finished(self, conn: Connection, inst: Instance | None) -> None:
        self.connections.discard(conn)
        if not self.connections:
            self._idle.set()
        if self.gate is not None:
            self.gate.closed()

    # --- drain --------------------------------------------------------------------------------
    def _on_state_change(self, change: StateChange) -> None:
        if change.pool != self.pool.name:
            return
        inst = self.pool.get(change.address)
        if inst is None:
            return
        if change.new is State.DRAINING:
            if inst not in self._drain_timers and self.drain_grace >= 0:
                self._drain_timers[inst] = self.loop.call_later(self.drain_grace, self._cut, inst)
        elif change.new.takes_new_work:
            timer = self._drain_timers.pop(inst, None)
            if timer is not None:
                timer.cancel()

    def _cut(self, inst: Instance) -> None:
        self._drain_timers.pop(inst, None)
        # A scan, not an index kept up per connection: cuts are rare, connections are not.
        conns = [c for c in self.connections if c.inst is inst and not c.done]
        if not conns:
            return
        log.info("%s: drain grace of %s expired, closing %d connections", self.name, inst.address, len(conns))
        figs = self.figures.of(inst.address)
        figs.drain_cut += len(conns)
        self.figures.drain_cut += len(conns)
        for conn in conns:
            conn.cut()


def make_service(tcp_cfg: TcpConfig, runtime: Host, sockets: list[socket.socket] | None = None) -> Service:
    """The section's service; `sockets` from bind_sockets when bound already (by a reload)."""
    if tcp_cfg.workers > 1:
        from tidegate.tcp.worker_kind import KIND
        from tidegate.workers.parent import WorkersService

        return WorkersService(KIND, tcp_cfg, runtime, sockets)
    return TcpService(tcp_cfg, runtime, sockets)
