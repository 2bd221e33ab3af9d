"""Byte offsets and small readers for the frames the director handles: Ethernet II, IPv4, TCP, UDP.

Frames are bytearrays read from an AF_PACKET socket (SOCK_RAW, so they start with the Ethernet
header; the kernel has already removed any VLAN tag into metadata). Fields are read in place with
`struct` at fixed offsets; nothing is copied into objects on the hot path.
"""

from __future__ import annotations

import ipaddress
import struct

ETH_LEN = 14
ETH_P_IP = 0x0800
ETH_P_ARP = 0x0806

IPPROTO_ICMP = 1
IPPROTO_IPIP = 4
IPPROTO_TCP = 6
IPPROTO_UDP = 17

# IPv4 header fields, offsets from the start of the IP header.
IP_TOS = 1
IP_TOTLEN = 2
IP_ID = 4
IP_FRAG = 6
IP_TTL = 8
IP_PROTO = 9
IP_CHECK = 10
IP_SRC = 12
IP_DST = 16
IP_DF = 0x4000
IP_MF = 0x2000
IP_OFFMASK = 0x1FFF

# TCP flags (byte 13 of the TCP header).
FIN = 0x01
SYN = 0x02
RST = 0x04
PSH = 0x08
ACK = 0x10
CWR = 0x80

TCP_CHECK = 16
UDP_CHECK = 6

U16 = struct.Struct("!H")
U32 = struct.Struct("!I")


def ip4(text: str) -> bytes:
    """The 4 bytes of a dotted IPv4 address (ValueError for anything else)."""
    return ipaddress.IPv4Address(text).packed


def ip4_text(raw: bytes | bytearray | memoryview) -> str:
    return str(ipaddress.IPv4Address(bytes(raw)))


def mac(text: str) -> bytes:
    raw = bytes.fromhex(text.replace(":", "").replace("-", ""))
    if len(raw) != 6:
        raise ValueError(f"{text!r} is not a MAC address")
    return raw


def mac_text(raw: bytes | bytearray | memoryview) -> str:
    return ":".join(f"{b:02x}" for b in bytes(raw))


def ihl(frame: bytearray | bytes | memoryview, l3: int = ETH_LEN) -> int:
    """IPv4 header length in bytes."""
    return (frame[l3] & 0x0F) * 4


def ip_total_length(frame: bytearray | bytes, l3: int = ETH_LEN) -> int:
    total: int = U16.unpack_from(frame, l3 + IP_TOTLEN)[0]
    return total


def is_fragment(frame: bytearray | bytes, l3: int = ETH_LEN) -> bool:
    """True for any fragment but a whole datagram (MF set or a non-zero offset)."""
    return bool(U16.unpack_from(frame, l3 + IP_FRAG)[0] & (IP_MF | IP_OFFMASK))


def tcp_header_length(frame: bytearray | bytes | memoryview, l4: int) -> int:
    return (frame[l4 + 12] >> 4) * 4
