"""The HTTP gateway as a runtime service: listener, sweeper, reload and graceful stop.

Stopping follows uvicorn's order: close the listener, close idle keep-alive connections (busy
ones close after their current answer), wait for in-flight exchanges up to the grace period, then
cut what is left. The sweeper is the only timer: each tick it checks every connection's deadlines
(header, idle, upstream response) and closes idle upstream connections, so no request arms one.
"""

from __future__ import annotations

import asyncio
import contextlib
import logging
import socket
from collections.abc import Mapping
from typing import Any, cast

from tidegate.accepting import AcceptCollector, AcceptGate
from tidegate.balancing.pool import Pool
from tidegate.config.model import Config, HttpConfig
from tidegate.fdlimit import default_max_connections, listeners, open_files
from tidegate.http import alpn
from tidegate.http.access_log import AccessLog
from tidegate.http.attempts import RetryBudget
from tidegate.http.client import ClientConnection
from tidegate.http.h2.connection import H2ClientConnection
from tidegate.http.h2.select import Sniffer
from tidegate.http.plain import RequestLane
from tidegate.http.plan import ListenerPlan
from tidegate.http.section import section_after_reload
from tidegate.http.tls import Handshake, ListenerTls
from tidegate.http.tls_metrics import TlsCollector
from tidegate.http.upstream import Upstreams
from tidegate.listening import stream_listener
from tidegate.service import Host, SectionError

log = logging.getLogger("tidegate.http")
# Lifecycle lines scripts wait for ("tidegate: ready"): the process log, logger "tidegate".
announce = logging.getLogger("tidegate")


class HttpService:
    def __init__(
        self, cfg: HttpConfig, runtime: Host, sock: socket.socket | None = None, announce: bool = True
    ) -> None:
        self.cfg = cfg
        self.sock = sock  # a listening socket made elsewhere (a worker process's), else bind `listen`
        self.announce = announce
        self.runtime = runtime
        self.name, self.index = runtime.listener_name("http")
        self.pools: Mapping[str, Pool] = runtime.pools
        self.budgets: dict[str, RetryBudget] = {}
        self.plan = ListenerPlan(cfg, self.pools, self.budgets)
        self.conns: set[ClientConnection | H2ClientConnection | Sniffer] = set()
        # The fast lane's judge, shared by the listener's connections: one take() is whole
        # within one call on this loop, and leaves its parser between messages (or is renewed).
        self.lane = RequestLane()
        self.stopping = False
        self.all_closed = asyncio.Event()
        self.access_log: AccessLog | None = AccessLog(cfg.access_log) if cfg.access_log else None
        self.answers: dict[int, int] = {}  # status → the gateway's own answers (client.py)
        self.loop: asyncio.AbstractEventLoop = None  # type: ignore[assignment]
        self.upstreams: Upstreams = None  # type: ignore[assignment]
        # Accepting, paused at max_connections or near the open-files limit (accepting.py).
        self.gate: AcceptGate = None  # type: ignore[assignment]
        self.max_connections = cfg.max_connections or default_max_connections(
            open_files(), listeners(runtime.config)
        )
        self._sweeper: asyncio.Task[None] | None = None
        self.address = ""
        self.tls: ListenerTls | None = ListenerTls(cfg.tls) if cfg.tls is not None else None
        self._tls_figures = runtime.figures("http_tls", TlsCollector)
        self._tls_figures.listeners.append(self)

    def _accept(self) -> asyncio.Protocol:
        if self.cfg.http2:
            return cast(asyncio.Protocol, Sniffer(self))  # HTTP/2 by its preface, else HTTP/1.1
        return cast(asyncio.Protocol, ClientConnection(self))

    def _after_handshake(self, name: str | None) -> asyncio.Protocol:
        return alpn.client_protocol(self, name)

    async def start(self) -> None:
        self.loop = asyncio.get_running_loop()
        self.upstreams = Upstreams(self.loop)
        sock = self.sock
        if sock is None:
            sock = stream_listener(self.cfg.listen, 2048)
        self.gate = AcceptGate(
            self.name,
            sock,
            self._serve,
            self.max_connections,
            self.conns.__len__,
            self.runtime.figures("accept", AcceptCollector),
        )
        await self.gate.start()
        bound = sock.getsockname()
        shown = f"[{bound[0]}]" if ":" in bound[0] else bound[0]
        self.address = f"{shown}:{bound[1]}"
        if self.announce:
            announce.info(f"{self.name} listening on {self.address}")
        self._sweeper = self.loop.create_task(self._sweep())

    async def _serve(self, sock: socket.socket) -> asyncio.AbstractServer:
        tls = self.tls
        if tls is not None:
            return await self.loop.create_server(
                lambda: cast(asyncio.Protocol, Handshake(tls, self._after_handshake)),
                sock=sock,
                ssl=tls.front,
                ssl_handshake_timeout=tls.cfg.handshake_timeout,
            )
        return await self.loop.create_server(self._accept, sock=sock)

    def opened(self, conn: H2ClientConnection | Sniffer) -> None:
        """An HTTP/2 connection, or one not yet told apart, counts toward max_connections as an
        HTTP/1.1 one does (ClientConnection.connection_made does the same inline)."""
        self.conns.add(conn)
        self.gate.opened()

    def closed(self, conn: H2ClientConnection | Sniffer) -> None:
        self.conns.discard(conn)
        self.gate.closed()
        if not self.conns and self.stopping:
            self.all_closed.set()

    async def reload(self, config: Config, pools: Mapping[str, Pool]) -> None:
        cfg = section_after_reload(config, self.cfg, self.index, self.name)
        self.pools = pools
        self.plan = ListenerPlan(cfg, pools, self.budgets)
        if cfg.access_log != self.cfg.access_log:
            if self.access_log is not None:
                self.access_log.close()
            self.access_log = AccessLog(cfg.access_log) if cfg.access_log else None
        if (cfg.tls is None) != (self.tls is None):
            log.warning("%s: turning TLS on or off needs a restart; the listener stays as it is", self.name)
        elif cfg.tls is not None and self.tls is not None:
            self.tls.reload(cfg.tls)
        self.cfg = cfg
        self.upstreams.retain({inst for pool in pools.values() for inst in pool})

    def reopen_logs(self) -> None:
        """SIGUSR1: open the access log's file again (after logrotate moved it)."""
        if self.access_log is not None:
            self.access_log.reopen()

    def _close_listener(self) -> None:
        if self.gate is not None:
            self.gate.close()

    async def stop_listening(self) -> None:
        self._close_listener()

    async def stop(self, grace: float) -> None:
        self.stopping = True
        self._close_listener()
        busy = sum(1 for c in self.conns if c.queue or c.tunnel is not None)
        log.info("%s: stopping; %d connections in flight, %d idle", self.name, busy, len(self.conns) - busy)
        for conn in list(self.conns):
            conn.shutdown()
        if self.conns:
            with contextlib.suppress(TimeoutError):
                async with asyncio.timeout(grace):
                    await self.all_closed.wait()
        for conn in list(self.conns):
            conn.abort()
        if self._sweeper is not None:
            self._sweeper.cancel()
        if self.upstreams is not None:
            self.upstreams.close_all()
        if self.access_log is not None:
            self.access_log.close()
        if self in self._tls_figures.listeners:
            self._tls_figures.listeners.remove(self)

    async def _sweep(self) -> None:
        loop = self.loop
        while True:
            await asyncio.sleep(self.plan.tick)
            now = loop.time()
            for conn in list(self.conns):
                conn.check(now)
            self.upstreams.sweep(now)

    def describe_pool(self, pool: str) -> dict[str, object] | None:
        target_pools = {t.name for t in self._targets()}
        if pool not in target_pools:
            return None
        p = self.pools.get(pool)
        idle = sum(len(self.upstreams.idle.get(i, ())) for i in p) if p is not None and self.upstreams else 0
        doc: dict[str, object] = {"listen": self.address, "idle_upstream_connections": idle}
        if self.tls is not None:
            doc["tls"] = {"handshakes": self.tls.handshakes, "handshake_failures": self.tls.failed}
        return doc

    def _targets(self) -> list[Any]:
        routes = self.plan.routes
        out = [t for _, t in routes.any_host if t is not None]
        for entries in routes.by_host.values():
            out.extend(t for _, t in entries if t is not None)
        if routes.default is not None:
            out.append(routes.default)
        return out


def check_section(cfg: HttpConfig, running: HttpConfig | None) -> None:
    """What a reload checks before it changes anything: a new access log can be opened."""
    if cfg.access_log and cfg.access_log != "-" and (running is None or running.access_log != cfg.access_log):
        try:
            AccessLog(cfg.access_log).close()
        except OSError as exc:
            raise SectionError(
                f"access_log {cfg.access_log!r} cannot be opened: {exc.strerror or exc}"
            ) from None


def bind_sockets(cfg: HttpConfig) -> list[socket.socket]:
    """The listening sockets of an [[http]] section, one per worker (OSError if they cannot bind)."""
    if cfg.workers > 1:
        from tidegate.http.worker_kind import KIND

        return [s for socks in KIND.bind(cfg, cfg.workers) for s in socks]
    return [stream_listener(cfg.listen, 2048)]


def make_service(http_cfg: HttpConfig, runtime: Host, sockets: list[socket.socket] | None = None) -> Any:
    """The section's service; `sockets` from bind_sockets when bound already (by a reload)."""
    if http_cfg.workers > 1:
        from tidegate.http.worker_kind import KIND
        from tidegate.workers.parent import WorkersService

        return WorkersService(KIND, http_cfg, runtime, sockets)
    return HttpService(http_cfg, runtime, sock=sockets[0] if sockets else None)
