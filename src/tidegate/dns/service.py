"""The DNS layer's asyncio shell: UDP and TCP listeners on one port around `handler.handle`.

UDP is bound first (port 0 picks a free one), then TCP on the same port; with port 0 another
process may hold that TCP port already, so binding is retried on a fresh UDP port a few times.
TCP follows RFC 7766: a 2-byte length before each message, several queries per connection
answered in order, idle connections closed after a while, reading paused while the peer is not
reading its answers.
"""

from __future__ import annotations

import asyncio
import contextlib
import errno
import logging
import socket
from collections.abc import Mapping
from typing import Any, cast

from tidegate.accepting import AcceptCollector, AcceptGate
from tidegate.balancing.pool import Pool
from tidegate.config.model import Config, DnsConfig, split_address
from tidegate.dns import udp_batch
from tidegate.dns.describe import describe_pool
from tidegate.dns.figures import Figures
from tidegate.dns.handler import handle
from tidegate.dns.metrics import DnsCollector
from tidegate.dns.udp_batch import BatchUdp
from tidegate.dns.zone import Zone
from tidegate.fdlimit import default_max_connections, listeners, open_files
from tidegate.listening import shown, stream_listener
from tidegate.service import Host, Service

log = logging.getLogger("tidegate.dns")
# Lifecycle lines scripts wait for ("tidegate: ready"): the process log, logger "tidegate".
announce = logging.getLogger("tidegate")

TCP_IDLE_TIMEOUT = 10.0
_BIND_TRIES = 20
# The UDP receive buffer: the default (208 KiB here) holds ~190 queries, and a burst of more (a
# client's 200 outstanding at its start) was dropped by the kernel. The kernel caps it at
# net.core.rmem_max.
UDP_RCVBUF = 1 << 20


def size_udp_buffer(sock: socket.socket) -> None:
    with contextlib.suppress(OSError):
        sock.setsockopt(socket.SOL_SOCKET, socket.SO_RCVBUF, UDP_RCVBUF)


class _Udp(asyncio.DatagramProtocol):
    def __init__(self, service: DnsService) -> None:
        self.service = service
        self.transport: asyncio.DatagramTransport | None = None

    def connection_made(self, transport: asyncio.BaseTransport) -> None:
        # uvloop's and asyncio's own datagram transports do not all subclass DatagramTransport.
        self.transport = cast(asyncio.DatagramTransport, transport)

    def datagram_received(self, data: bytes, addr: Any) -> None:
        out = handle(data, self.service.zone, "udp")
        if out is not None and self.transport is not None:
            self.transport.sendto(out, addr)

    def error_received(self, exc: Exception) -> None:
        # ICMP port unreachable for an earlier answer, and the like: nothing to do.
        pass


class _Tcp(asyncio.Protocol):
    def __init__(self, service: DnsService) -> None:
        self.service = service
        self.transport: asyncio.Transport | None = None
        self.buf = bytearray()
        self.idle: asyncio.TimerHandle | None = None

    def connection_made(self, transport: asyncio.BaseTransport) -> None:
        self.transport = cast(asyncio.Transport, transport)
        self.service.connections.add(self)
        self._arm()
        gate = self.service.gate
        if gate is not None:
            gate.opened()

    def _arm(self) -> None:
        if self.idle is not None:
            self.idle.cancel()
        loop = asyncio.get_running_loop()
        self.idle = loop.call_later(TCP_IDLE_TIMEOUT, self.close)

    def close(self) -> None:
        if self.transport is not None:
            self.transport.close()

    def data_received(self, data: bytes) -> None:
        self.buf += data
        self._arm()
        transport = self.transport
        assert transport is not None
        while len(self.buf) >= 2:
            size = int.from_bytes(self.buf[:2], "big")
            if size == 0:
                transport.close()
                return
            if len(self.buf) < 2 + size:
                return
            msg = bytes(self.buf[2 : 2 + size])
            del self.buf[: 2 + size]
            out = handle(msg, self.service.zone, "tcp")
            if transport.is_closing():
                return
            if out is not None:  # None: a response or a stub of a header, answered by silence
                transport.write(len(out).to_bytes(2, "big") + out)

    def pause_writing(self) -> None:
        if self.transport is not None:
            self.transport.pause_reading()

    def resume_writing(self) -> None:
        if self.transport is not None and not self.transport.is_closing():
            self.transport.resume_reading()

    def connection_lost(self, exc: Exception | None) -> None:
        if self.idle is not None:
            self.idle.cancel()
        self.service.connections.discard(self)
        gate = self.service.gate
        if gate is not None:
            gate.closed()


def bind_sockets(cfg: DnsConfig) -> list[socket.socket]:
    """UDP and TCP sockets on the section's address (OSError if they cannot bind), a pair per
    worker. UDP first: with port 0 it picks the port, and TCP follows; if another process holds
    that TCP port, retry."""
    if cfg.workers > 1:
        from tidegate.dns.worker_kind import KIND

        return [s for socks in KIND.bind(cfg, cfg.workers) for s in socks]
    host, port = split_address(cfg.listen)
    family, _, _, _, sockaddr = socket.getaddrinfo(host, port, type=socket.SOCK_DGRAM)[0]
    for attempt in range(_BIND_TRIES):
        udp = socket.socket(family, socket.SOCK_DGRAM)
        try:
            udp.bind(sockaddr)
            udp.setblocking(False)
            size_udp_buffer(udp)
            bound = udp.getsockname()
            tcp = stream_listener(
                f"[{bound[0]}]:{bound[1]}" if family == socket.AF_INET6 else f"{bound[0]}:{bound[1]}", 128
            )
        except OSError as exc:
            udp.close()
            if port != 0 or exc.errno != errno.EADDRINUSE or attempt == _BIND_TRIES - 1:
                raise
            continue
        return [udp, tcp]
    raise AssertionError("unreachable")


class DnsService:
    name = "dns"

    def __init__(self, cfg: DnsConfig, runtime: Host, sockets: list[socket.socket] | None = None) -> None:
        self.cfg = cfg
        self.sockets = sockets  # UDP and TCP, bound already (by a reload), else start() binds
        self.runtime = runtime
        self.figures = Figures()
        self.zone = Zone(cfg, runtime.pools, self.figures)
        self.connections: set[_Tcp] = set()
        self._udp: asyncio.DatagramTransport | BatchUdp | None = None
        self.gate: AcceptGate | None = None  # the TCP listener's
        self._collector = runtime.figures("dns", DnsCollector)
        self._collector.services.append(self)

    async def start(self) -> None:
        (udp_sock, tcp_sock), self.sockets = self.sockets or bind_sockets(self.cfg), None
        loop = asyncio.get_running_loop()
        try:
            if udp_batch.available():
                batch = self._udp = BatchUdp(udp_sock, self.answer_udp, self.figures)
                batch.start(loop)
            else:
                self._udp, _ = await loop.create_datagram_endpoint(lambda: _Udp(self), sock=udp_sock)
            self.gate = AcceptGate(
                self.name,
                tcp_sock,
                lambda sock: loop.create_server(lambda: _Tcp(self), sock=sock),
                self.cfg.max_connections
                or default_max_connections(open_files(), listeners(self.runtime.config)),
                self.connections.__len__,
                self.runtime.figures("accept", AcceptCollector),
            )
            await self.gate.start()
        except BaseException:
            udp_sock.close()
            tcp_sock.close()
            raise
        announce.info(f"{self.name} listening on {shown(tcp_sock)}")

    async def reload(self, config: Config, pools: Mapping[str, Pool]) -> None:
        if config.dns is None:
            log.warning("dns: the new config has no [dns] section; keeping the old zone until restart")
            return
        if config.dns.listen != self.cfg.listen:
            log.warning("dns: listen address changes need a restart; still on %s", self.cfg.listen)
        self.zone = next_zone(self.zone, self.cfg, config.dns, pools)
        self.cfg = config.dns
        if self.gate is not None and config.dns.max_connections is not None:
            self.gate.max_connections = config.dns.max_connections

    async def stop_listening(self) -> None:
        if self._udp is not None:
            self._udp.close()
        if self.gate is not None:
            self.gate.close()
        self._detach()

    async def stop(self, grace: float) -> None:
        await self.stop_listening()
        for conn in list(self.connections):
            conn.close()  # each flushes what it owes, then closes
        self._detach()

    def _detach(self) -> None:
        # A [dns] whose listen moved is a new service feeding the same collector.
        if self in self._collector.services:
            self._collector.services.remove(self)

    def answer_udp(self, wire: bytes) -> bytes | None:
        return handle(wire, self.zone, "udp")

    def describe_pool(self, pool: str) -> dict[str, object] | None:
        return describe_pool(self.zone, pool)

    def cache_entries(self) -> int:
        return len(self.zone.packets)

    def apply_shared(self, shared: Mapping[str, Any]) -> None:
        """In a worker: what the main process says every worker agrees on (worker_kind.py)."""
        if "serial" in shared:
            self.zone.follow(int(shared["serial"]))


def next_zone(old: Zone, old_cfg: DnsConfig, cfg: DnsConfig, pools: Mapping[str, Pool]) -> Zone:
    """The zone after a reload: the serial and answer sets carried over, the serial bumped when the
    section changed."""
    zone = Zone(cfg, pools, old.figures)
    zone.inherit(old)
    if cfg.model_dump(exclude={"listen", "workers"}) != old_cfg.model_dump(exclude={"listen", "workers"}):
        zone.bump_serial()
    zone.refresh()
    return zone


def make_service(cfg: DnsConfig, runtime: Host, sockets: list[socket.socket] | None = None) -> Service:
    """The section's service; `sockets` from bind_sockets when bound already (by a reload)."""
    if cfg.workers > 1:
        from tidegate.dns.worker_kind import KIND
        from tidegate.workers.parent import WorkersService

        return WorkersService(KIND, cfg, runtime, sockets)
    return DnsService(cfg, runtime, sockets)
