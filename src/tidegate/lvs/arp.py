"""ARP for IPv4 over Ethernet (RFC 826): what the director reads and what it sends.

The director answers ARP for the VIP from its own process instead of configuring the VIP in its
kernel, which would otherwise answer the clients' SYNs itself (docs/architecture.md, "The network layer"). It also
resolves its real servers' MAC addresses by asking, and learns from every ARP frame it sees.
"""

from __future__ import annotations

import struct
from typing import NamedTuple

from tidegate.lvs.frame import ETH_LEN, ETH_P_ARP, ETH_P_IP

REQUEST = 1
REPLY = 2
BROADCAST = b"\xff" * 6
_ARP = struct.Struct("!HHBBH6s4s6s4s")
_ETH = struct.Struct("!6s6sH")
ARP_FRAME_LEN = ETH_LEN + _ARP.size  # 42; padded to 60 by the device


class Arp(NamedTuple):
    op: int
    sender_mac: bytes
    sender_ip: bytes
    target_mac: bytes
    target_ip: bytes


def parse(frame: bytes | bytearray, at: int = 0) -> Arp | None:
    """The ARP message in the Ethernet frame starting at `at`, or None when it is not
    IPv4-over-Ethernet ARP."""
    if len(frame) < at + ARP_FRAME_LEN:
        return None
    htype, ptype, hlen, plen, op, sha, spa, tha, tpa = _ARP.unpack_from(frame, at + ETH_LEN)
    if htype != 1 or ptype != ETH_P_IP or hlen != 6 or plen != 4:
        return None
    return Arp(op, sha, spa, tha, tpa)


def build(op: int, src_mac: bytes, src_ip: bytes, dst_mac: bytes, dst_ip: bytes, eth_dst: bytes) -> bytes:
    return _ETH.pack(eth_dst, src_mac, ETH_P_ARP) + _ARP.pack(
        1, ETH_P_IP, 6, 4, op, src_mac, src_ip, dst_mac, dst_ip
    )


def reply_to(req: Arp, my_mac: bytes) -> bytes:
    """Our answer to `req`: its target IP is at my_mac."""
    return build(REPLY, my_mac, req.target_ip, req.sender_mac, req.sender_ip, req.sender_mac)


def request(my_mac: bytes, my_ip: bytes, target_ip: bytes) -> bytes:
    """Who has target_ip? (my_ip may be 0.0.0.0, an RFC 5227 probe, which Linux also answers.)"""
    return build(REQUEST, my_mac, my_ip, b"\x00" * 6, target_ip, BROADCAST)


def gratuitous(my_mac: bytes, ip: bytes) -> bytes:
    """An announcement that ip is at my_mac (a request for our own address, RFC 5227 §3)."""
    return build(REQUEST, my_mac, ip, b"\x00" * 6, ip, BROADCAST)
