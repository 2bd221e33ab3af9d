"""The `userspace` engine: the director of director.py on a packet socket, in the event loop.

One reader callback drains the socket in batches (recv, decide, send: the buffer is reused, so
each frame is sent before the next is read). A one-second ticker expires connections, asks ARP
for next hops not yet known and re-asks every 30 s for those known (a real server replaced on the
same address gets a new MAC), and recomputes next hops when the pool's membership changed.
"""

from __future__ import annotations

import asyncio
import contextlib
import logging
import socket
from collections.abc import Callable

from tidegate.balancing.instance import Instance
from tidegate.balancing.pool import Pool
from tidegate.lvs import netinfo
from tidegate.lvs.conntable import ConnTable
from tidegate.lvs.director import Director, Mode, Out
from tidegate.lvs.frame import IPPROTO_TCP, IPPROTO_UDP, ip4
from tidegate.lvs.packet_socket import PACKET_OTHERHOST, open_packet_socket

log = logging.getLogger("tidegate.lvs")

BATCH = 512  # frames per reader callback before yielding to the loop
REFRESH = 30.0  # seconds between re-resolutions of known next hops


class EngineError(Exception):
    """The engine cannot run here; the message says why and what to do."""


def preflight(mode: Mode, vip: str, ifname: str) -> netinfo.Interface:
    """What must hold before the engine starts (EngineError says what does not): the interface
    exists, the kernel neither forwards on it nor owns the VIP, TUN has a source address. Also
    what a reload checks before it changes anything (lvs/service.py)."""
    try:
        iface = netinfo.interface(ifname)
    except netinfo.InterfaceError as exc:
        raise EngineError(str(exc)) from None
    if netinfo.forwarding(ifname):
        raise EngineError(
            f"IPv4 forwarding is on for {ifname}: the kernel would forward the VIP's packets "
            f"(and, in NAT, the real servers' replies) itself, next to the director. "
            f"Turn it off: sysctl net.ipv4.conf.{ifname}.forwarding=0"
        )
    if netinfo.is_local(vip):
        raise EngineError(
            f"the VIP {vip} is configured on this host: its kernel would answer the clients' "
            "SYNs itself. Remove it; the director answers ARP for the VIP on its own."
        )
    if mode is Mode.TUN and iface.ipv4 is None:
        raise EngineError(f"TUN mode needs an IPv4 address on {ifname} as the tunnels' source")
    return iface


class UserspaceEngine:
    def __init__(
        self,
        *,
        mode: str,
        vip: str,
        port: int,
        protocol: str,
        interface: str,
        pool: Pool,
        table: ConnTable,
    ) -> None:
        self.mode = Mode(mode)
        self.vip_text = vip
        self.vip = ip4(vip)
        self.port = port
        self.proto = IPPROTO_TCP if protocol == "tcp" else IPPROTO_UDP
        self.ifname = interface
        self.pool = pool
        self.table = table
        self.director: Director | None = None
        self.sock: socket.socket | None = None
        self.sent = 0
        self.send_errors = 0
        self._buf = bytearray(70_000)
        self._ticker: asyncio.Task[None] | None = None
        self._pool_version = -1
        self._resolved = asyncio.Event()
        self._idle_reported: set[Instance] = set()
        self._loop = asyncio.get_running_loop()

    # --- start ------------------------------------------------------------------------------
    async def start(self) -> None:
        iface = await asyncio.to_thread(preflight, self.mode, self.vip_text, self.ifname)
        self.iface = iface
        self.director = Director(
            mode=self.mode,
            vip=self.vip,
            port=self.port,
            proto=self.proto,
            my_mac=iface.mac,
            my_ip=iface.ipv4,
            mtu=iface.mtu,
            pool=self.pool,
            table=self.table,
            log=log.warning,
        )
        await self._refresh_nexthops()
        try:
            self.sock = open_packet_socket(
                self.ifname, self.vip, self.proto if self.mode is Mode.NAT else None
            )
        except PermissionError:
            raise EngineError("the userspace engine needs CAP_NET_RAW (run as root)") from None
        self._loop.add_reader(self.sock.fileno(), self._on_readable)
        now = self._loop.time()
        self._send(self.director.announce())
        self._send(self.director.resolve_missing(now))
        if not self._all_resolved():
            with contextlib.suppress(TimeoutError):
                await asyncio.wait_for(self._resolved.wait(), 1.0)
        for inst in self.pool:
            if self.mode is not Mode.NAT and inst.port != self.port:
                log.warning(
                    "real server %s: %s mode does not translate ports; packets keep port %d",
                    inst.address,
                    self.mode.value.upper(),
                    self.port,
                )
        self._ticker = asyncio.create_task(self._tick())

    def _all_resolved(self) -> bool:
        d = self.director
        assert d is not None
        done = all(ip in d.neigh for ip in d.watched())
        if done:
            self._resolved.set()
        return done

    async def _refresh_nexthops(self) -> None:
        d = self.director
        assert d is not None
        self._pool_version = self.pool.version
        for inst in self.pool:
            ip = d.ip_of(inst)
            if ip is None:
                log.warning("real server %s: not an IPv4 address; the director cannot reach it", inst.address)
                continue
            nh, oif = await asyncio.to_thread(netinfo.nexthop, inst.host)
            if oif is not None and oif != self.iface.index:
                log.warning("real server %s is not reached through %s", inst.address, self.ifname)
            if self.mode is Mode.DR and nh != inst.host:
                log.warning(
                    "real server %s is behind a router: DR needs it on the director's segment", inst.address
                )
            d.nexthop[inst] = ip4(nh)
        for ip, mac in (await asyncio.to_thread(netinfo.neighbours, self.iface.index)).items():
            if ip in d.watched():
                d.neigh.setdefault(ip, mac)

    # --- the hot path -----------------------------------------------------------------------
    def _on_readable(self) -> None:
        sock = self.sock
        d = self.director
        if sock is None or d is None:
            return
        buf = self._buf
        recv = sock.recvfrom_into
        send = sock.send
        handle = d.handle
        now = self._loop.time()
        for _ in range(BATCH):
            try:
                n, addr = recv(buf)
            except (BlockingIOError, InterruptedError):
                break
            if addr[2] >= PACKET_OTHERHOST:
                continue
            for out in handle(buf, n, now):
                try:
                    send(out)
                    self.sent += 1
                except OSError:
                    self.send_errors += 1
        if not self._resolved.is_set():
            self._all_resolved()

    def _send(self, frames: list[Out]) -> None:
        if self.sock is None:
            return
        for f in frames:
            try:
                self.sock.send(f)
                self.sent += 1
            except OSError:
                self.send_errors += 1

    async def _tick(self) -> None:
        last_refresh = self._loop.time()
        while True:
            await asyncio.sleep(1.0)
            d = self.director
            assert d is not None
            now = self._loop.time()
            self.table.expire(now)
            if self.pool.version != self._pool_version:
                await self._refresh_nexthops()
            self._report_idle()
            if now - last_refresh >= REFRESH:
                last_refresh = now
                for ip in d.watched():
                    self._send(d.arp_request(ip, now))
            else:
                self._send(d.resolve_missing(now))

    def _report_idle(self) -> None:
        """Log once when a real server that takes no new connections (weight 0, draining, down,
        maint) has no active connection left: the moment a quiesce is complete."""
        for inst in self.pool:
            if inst.available:
                self._idle_reported.discard(inst)
            elif inst not in self._idle_reported and self.table.stats_for(inst).active == 0:
                self._idle_reported.add(inst)
                log.info("lvs: real server %s takes no new connections and has none left", inst.address)

    # --- change and stop ----------------------------------------------------------------------
    def set_pool(self, pool: Pool) -> None:
        self.pool = pool
        if self.director is not None:
            self.director.pool = pool
        self._pool_version = -1

    async def stop(self, grace: float, established: Callable[[], int]) -> None:
        """Stop scheduling new connections, let established ones finish up to `grace`, close."""
        if self.director is not None:
            self.director.accepting = False
        deadline = self._loop.time() + grace
        while established() and self._loop.time() < deadline:
            await asyncio.sleep(0.1)
        if self._ticker is not None:
            self._ticker.cancel()
            with contextlib.suppress(asyncio.CancelledError):
                await self._ticker
        if self.sock is not None:
            self._loop.remove_reader(self.sock.fileno())
            self.sock.close()
            self.sock = None
