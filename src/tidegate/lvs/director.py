"""The userspace director's decisions for one frame: sans-I/O, so tests feed it bytes and read the
frames it wants sent.

Theory of operation: `handle(buf, n, now)` takes one frame as read from the packet socket (the
virtio-net header, then Ethernet) and returns the frames to write back to that socket, each with
its own virtio-net header. In order:

- ARP: a request for the VIP is answered with the director's own MAC (the VIP lives in no
  kernel on the director); every ARP frame from a next hop we forward to teaches us its MAC.
- IPv4 to VIP:port (the service's protocol): the connection table gives the real server, or a
  new connection (TCP: only a SYN opens one, as in IPVS) is scheduled by the pool's scheduler,
  keyed by the client's address for the hashing schedulers. Then per mode:
  DR rewrites the destination MAC, NAT the destination address and port, TUN wraps the packet
  in IPIP (clamping MSS on SYNs, cutting packets that would not fit into segments).
- NAT only: a packet from a real server that matches a connection's reply key is rewritten back
  to come from VIP:port and sent to the client's MAC (the one its packets came from).
- anything else is not ours: nothing is sent, the kernel deals with it.

Frames whose checksum offload is pending (virtio NEEDS_CSUM) and GSO frames keep their virtio
header on the way out in DR and NAT, so the kernel (or NIC) finishes them; TUN finishes them here
because the inner packet is opaque to whoever sends the outer one.
"""

from __future__ import annotations

import ipaddress
import math
import struct
from collections.abc import Callable
from enum import StrEnum

from tidegate.balancing.instance import Instance
from tidegate.balancing.pool import Pool
from tidegate.balancing.state import State
from tidegate.lvs import arp
from tidegate.lvs.conntable import Conn, ConnTable
from tidegate.lvs.frame import (
    ETH_LEN,
    ETH_P_ARP,
    ETH_P_IP,
    IP_DF,
    IP_MF,
    IP_OFFMASK,
    IPPROTO_TCP,
    RST,
    SYN,
    U16,
)
from tidegate.lvs.rewrite import (
    clamp_mss,
    complete_checksum,
    encapsulate_ipip,
    fragment_ipv4,
    icmp_frag_needed,
    rewrite_dst,
    rewrite_src,
    segment_tcp,
    set_macs,
)
from tidegate.lvs.tcp_state import REUSABLE, Direction
from tidegate.lvs.vnet import NEEDS_CSUM, PLAIN, VNET, VNET_LEN

Out = bytes | bytearray | memoryview
_NOTHING: list[Out] = []
_ZERO_IP = bytes(4)
_B = VNET_LEN
_L3 = VNET_LEN + ETH_LEN  # IP header offset in the buffer
_ACK_SYN_RST_FIN = 0x17
_HOST16 = struct.Struct("=H")  # gso_size in the virtio header, host byte order


class Mode(StrEnum):
    DR = "dr"
    NAT = "nat"
    TUN = "tun"


def ipv4_of(inst: Instance) -> bytes | None:
    try:
        return ipaddress.IPv4Address(inst.host).packed
    except ValueError:
        return None


class Director:
    def __init__(
        self,
        *,
        mode: Mode | str,
        vip: bytes,
        port: int,
        proto: int,
        my_mac: bytes,
        my_ip: bytes | None,
        mtu: int,
        pool: Pool,
        table: ConnTable | None = None,
        log: Callable[[str], None] | None = None,
    ) -> None:
        self.mode = Mode(mode)
        self.vip = vip
        self.port = port
        self.port_bytes = U16.pack(port)
        self.proto = proto
        self.my_mac = my_mac
        self.my_ip = my_ip
        self.mtu = mtu
        self.pool = pool
        self.table = table if table is not None else ConnTable()  # an empty table is falsy
        self.log = log or (lambda _msg: None)
        self.neigh: dict[bytes, bytes] = {}  # next-hop IPv4 → MAC, learned from ARP and the kernel
        self.nexthop: dict[Instance, bytes] = {}  # real server → next-hop IPv4 (itself when on-link)
        self._ips: dict[Instance, bytes | None] = {}
        self._asked: dict[bytes, float] = {}
        self._ip_id = 0
        self.dropped: dict[str, int] = {}
        self.forwarded = 0
        self.replied = 0  # NAT replies rewritten back to the VIP
        self.accepting = True  # False while stopping: existing connections only

    # --- helpers --------------------------------------------------------------------------
    def _drop(self, why: str) -> list[Out]:
        self.dropped[why] = self.dropped.get(why, 0) + 1
        return _NOTHING

    def ip_of(self, inst: Instance) -> bytes | None:
        try:
            return self._ips[inst]
        except KeyError:
            ip = self._ips[inst] = ipv4_of(inst)
            return ip

    def nexthop_of(self, inst: Instance) -> bytes | None:
        nh = self.nexthop.get(inst)
        return nh if nh is not None else self.ip_of(inst)

    def watched(self) -> set[bytes]:
        """The next hops whose MACs the director needs: those of the pool's instances."""
        out: set[bytes] = set()
        for inst in self.pool:
            nh = self.nexthop_of(inst)
            if nh is not None:
                out.add(nh)
        return out

    def arp_request(self, ip: bytes, now: float) -> list[Out]:
        """An ARP request for ip, at most one per second per address."""
        if now - self._asked.get(ip, -1e9) < 1.0:
            return _NOTHING
        self._asked[ip] = now
        return [PLAIN + arp.request(self.my_mac, self.my_ip or _ZERO_IP, ip)]

    def resolve_missing(self, now: float) -> list[Out]:
        out: list[Out] = []
        for ip in self.watched():
            if ip not in self.neigh:
                out += self.arp_request(ip, now)
        return out

    def announce(self) -> list[Out]:
        """Gratuitous ARP: clients that cached another MAC for the VIP learn ours."""
        return [PLAIN + arp.gratuitous(self.my_mac, self.vip)]

    # --- one frame ------------------------------------------------------------------------
    def handle(self, buf: bytearray, n: int, now: float) -> list[Out]:
        if n < _L3 + 20:
            if n >= _B + 14 and U16.unpack_from(buf, _B + 12)[0] == ETH_P_ARP:
                return self._arp(buf, now)
            return _NOTHING
        etype = U16.unpack_from(buf, _B + 12)[0]
        if etype == ETH_P_IP:
            if buf[_L3] >> 4 != 4:
                return _NOTHING
            if buf[_L3 + 16 : _L3 + 20] == self.vip:
                return self._inbound(buf, n, now)
            if self.mode is Mode.NAT and buf[_L3 + 9] == self.proto:
                return self._reply(buf, n, now)
            return _NOTHING
        if etype == ETH_P_ARP:
            return self._arp(buf, now)
        return _NOTHING

    def _arp(self, buf: bytearray, now: float) -> list[Out]:
        a = arp.parse(buf, _B)
        if a is None:
            return _NOTHING
        if a.sender_ip != _ZERO_IP and a.sender_ip != self.vip and a.sender_ip in self.watched():
            self.neigh[a.sender_ip] = a.sender_mac
        if a.op == arp.REQUEST and a.target_ip == self.vip and a.sender_ip != self.vip:
            return [PLAIN + arp.reply_to(a, self.my_mac)]
        return _NOTHING

    def _inbound(self, buf: bytearray, n: int, now: float) -> list[Out]:
        l3 = _L3
        if buf[l3 + 9] != self.proto:
            return self._drop("protocol")
        if U16.unpack_from(buf, l3 + 6)[0] & (IP_MF | IP_OFFMASK):
            return self._drop("fragment")
        ihl = (buf[l3] & 0x0F) * 4
        l4 = l3 + ihl
        if buf[l4 + 2 : l4 + 4] != self.port_bytes:
            return self._drop("port")
        key = bytes(buf[l3 + 12 : l3 + 20]) + bytes(buf[l4 : l4 + 4])
        conn = self.table.conns.get(key)
        tcp = self.proto == IPPROTO_TCP
        if tcp:
            flags = buf[l4 + 13]
            if (
                conn is not None
                and flags & _ACK_SYN_RST_FIN == SYN
                and (conn.state in REUSABLE or conn.inst.state is State.DOWN)
            ):
                self.table.remove(conn)  # a new connection on an old 5-tuple
                conn = None
            if conn is None:
                if flags & _ACK_SYN_RST_FIN != SYN:
                    return self._drop("no connection")
                conn = self._schedule(buf, key, l3, l4, now)
                if conn is None:
                    return self._drop("no real server")
            self.table.tcp_packet(
                conn, flags, Direction.INPUT if self.mode is Mode.NAT else Direction.INPUT_ONLY, now
            )
        else:
            flags = 0
            if conn is None:
                conn = self._schedule(buf, key, l3, l4, now)
                if conn is None:
                    return self._drop("no real server")
            self.table.udp_packet(conn, now)
        inst = conn.inst
        nh = self.nexthop_of(inst)
        mac = self.neigh.get(nh) if nh is not None else None
        if mac is None or nh is None:
            self._drop("no MAC for real server")
            return self.arp_request(nh, now) if nh is not None else _NOTHING
        end = l3 + U16.unpack_from(buf, l3 + 2)[0]
        st = conn.stats
        size = end - l3
        gso_size = _HOST16.unpack_from(buf, 4)[0] if buf[1] else 0
        segs = math.ceil((size - ihl - (buf[l4 + 12] >> 4) * 4) / gso_size) if gso_size else 1
        st.in_packets += segs
        st.in_bytes += size
        inst.counters.bytes_in += size
        self.forwarded += 1
        mode = self.mode
        buf[0] &= NEEDS_CSUM  # DATA_VALID means nothing on the way out
        if mode is Mode.DR:
            set_macs(buf, mac, self.my_mac, _B)
            return [memoryview(buf)[:n]]
        rip = self.ip_of(inst)
        assert rip is not None
        if mode is Mode.NAT:
            rewrite_dst(buf, l3, l4, rip, inst.port, partial=bool(buf[0] & NEEDS_CSUM))
            set_macs(buf, mac, self.my_mac, _B)
            return [memoryview(buf)[:n]]
        return self._tunnel(buf, n, l4 - _B, end - _B, rip, mac, tcp, flags)

    def _schedule(self, buf: bytearray, key: bytes, l3: int, l4: int, now: float) -> Conn | None:
        if not self.accepting:
            return None
        client = bytes(buf[l3 + 12 : l3 + 16])
        inst = self.pool.pick(client)
        if inst is None:
            return None
        rip = self.ip_of(inst)
        if rip is None:
            self.log(f"real server {inst.address}: not an IPv4 address, skipped")
            return None
        rkey = None
        if self.mode is Mode.NAT:
            rkey = rip + client + U16.pack(inst.port) + bytes(buf[l4 : l4 + 2])
        return self.table.open(
            key, inst, now, udp=self.proto != IPPROTO_TCP, rkey=rkey, client_mac=bytes(buf[_B + 6 : _B + 12])
        )

    def _tunnel(
        self, buf: bytearray, n: int, l4: int, end: int, rip: bytes, mac: bytes, tcp: bool, flags: int
    ) -> list[Out]:
        frame = memoryview(buf)[_B:n]
        l3 = ETH_LEN
        size = end - l3
        src = self.my_ip
        assert src is not None
        room = self.mtu - 20  # what an inner packet may measure
        hdr = VNET.unpack_from(buf, 0)
        if tcp and size > room:
            thl = (frame[l4 + 12] >> 4) * 4
            pieces: list[bytearray] = segment_tcp(frame, l3, l4, end, room - (l4 - l3) - thl)
        else:
            if hdr[0] & NEEDS_CSUM:
                complete_checksum(frame, hdr[4], hdr[5], end)
            if tcp and flags & SYN and not flags & RST:
                clamp_mss(frame, l3, l4, end, room - 40)
            pieces = [frame]  # type: ignore[list-item]
        out: list[Out] = []
        for piece in pieces:
            self._ip_id = (self._ip_id + 1) & 0xFFFF
            pend = len(piece) if piece is not frame else end
            if pend - l3 <= room:
                out.append(PLAIN + encapsulate_ipip(piece, l3, pend, src, rip, self._ip_id, mac, self.my_mac))
                continue
            # Not TCP and too big for the tunnel.
            if U16.unpack_from(piece, l3 + 6)[0] & IP_DF:
                self._drop("too big (ICMP sent)")
                return [PLAIN + icmp_frag_needed(piece, l3, room, src, bytes(frame[6:12]), self.my_mac)]
            outer = encapsulate_ipip(piece, l3, pend, src, rip, self._ip_id, mac, self.my_mac)
            eth = bytes(outer[:ETH_LEN])
            out += [PLAIN + eth + f for f in fragment_ipv4(outer[ETH_LEN:], self.mtu)]
        return out

    def _reply(self, buf: bytearray, n: int, now: float) -> list[Out]:
        l3 = _L3
        l4 = l3 + (buf[l3] & 0x0F) * 4
        rkey = bytes(buf[l3 + 12 : l3 + 20]) + bytes(buf[l4 : l4 + 4])
        conn = self.table.replies.get(rkey)
        if conn is None:
            return _NOTHING  # not a connection of ours: the kernel's business
        if U16.unpack_from(buf, l3 + 6)[0] & (IP_MF | IP_OFFMASK):
            return self._drop("fragment")
        if self.proto == IPPROTO_TCP:
            self.table.tcp_packet(conn, buf[l4 + 13], Direction.OUTPUT, now)
        else:
            self.table.udp_packet(conn, now)
        end = l3 + U16.unpack_from(buf, l3 + 2)[0]
        size = end - l3
        gso_size = _HOST16.unpack_from(buf, 4)[0] if buf[1] else 0
        st = conn.stats
        if gso_size:
            payload = size - (l4 - l3) - ((buf[l4 + 12] >> 4) * 4 if self.proto == IPPROTO_TCP else 8)
            st.out_packets += math.ceil(payload / gso_size)
        else:
            st.out_packets += 1
        st.out_bytes += size
        conn.inst.counters.bytes_out += size
        buf[0] &= NEEDS_CSUM
        rewrite_src(buf, l3, l4, self.vip, self.port, partial=bool(buf[0]))
        set_macs(buf, conn.client_mac, self.my_mac, _B)
        self.replied += 1
        return [memoryview(buf)[:n]]
