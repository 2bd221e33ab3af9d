"""The PROXY protocol header (HAProxy's spec, proxy-protocol.txt), encoder only.

A full proxy hides the client's address from the instance: the instance sees a connection from
tidegate. With `proxy_protocol = "v1"` or `"v2"` the first bytes tidegate sends on each instance
connection say who the client was and which address it connected to, the way HAProxy's
`send-proxy` / `send-proxy-v2` and nginx's `proxy_protocol on` do. The instance must expect it
(nginx `listen … proxy_protocol`, HAProxy `accept-proxy`, PostgreSQL poolers, …).

Pure: addresses in, bytes out. The spec allows only same-family pairs, so a mixed pair (an IPv4
client on a dual-stack IPv6 listener, say) is written as IPv6 with the IPv4 side mapped, and an
IPv4-mapped pair is unmapped to plain IPv4 (what the client really used).
"""

from __future__ import annotations

import ipaddress
import struct

# Section 2.2: the 12-byte signature that starts every v2 header.
V2_SIGNATURE = b"\r\n\r\n\x00\r\nQUIT\n"
_V2_PROXY = 0x21  # version 2, command PROXY
_V2_LOCAL = 0x20  # version 2, command LOCAL (no address block)
_V2_TCP4 = 0x11  # AF_INET, STREAM
_V2_TCP6 = 0x21  # AF_INET6, STREAM

IPAddress = ipaddress.IPv4Address | ipaddress.IPv6Address
SocketAddress = tuple[str, int]


def _pair(src: SocketAddress, dst: SocketAddress) -> tuple[IPAddress, IPAddress] | None:
    """Both addresses in one family, or None when either is not an IP address (a UNIX socket)."""
    try:
        s = ipaddress.ip_address(src[0].partition("%")[0])
        d = ipaddress.ip_address(dst[0].partition("%")[0])
    except ValueError:
        return None
    if isinstance(s, ipaddress.IPv6Address) and s.ipv4_mapped is not None:
        s = s.ipv4_mapped
    if isinstance(d, ipaddress.IPv6Address) and d.ipv4_mapped is not None:
        d = d.ipv4_mapped
    if s.version != d.version:
        if isinstance(s, ipaddress.IPv4Address):
            s = ipaddress.IPv6Address(f"::ffff:{s}")
        if isinstance(d, ipaddress.IPv4Address):
            d = ipaddress.IPv6Address(f"::ffff:{d}")
    return s, d


def encode_v1(src: SocketAddress | None, dst: SocketAddress | None) -> bytes:
    """`PROXY TCP4 192.168.0.1 192.168.0.11 56324 443\\r\\n`; `PROXY UNKNOWN\\r\\n` without addresses."""
    pair = _pair(src, dst) if src is not None and dst is not None else None
    if pair is None or src is None or dst is None:
        return b"PROXY UNKNOWN\r\n"
    s, d = pair
    family = "TCP4" if s.version == 4 else "TCP6"
    return f"PROXY {family} {s} {d} {src[1]} {dst[1]}\r\n".encode("ascii")


def encode_v2(src: SocketAddress | None, dst: SocketAddress | None) -> bytes:
    """The binary header: signature, version/command, family, length, then the address block.

    Without usable addresses the command is LOCAL (the instance then uses the real connection's
    addresses), as the spec prescribes for connections the proxy cannot describe.
    """
    pair = _pair(src, dst) if src is not None and dst is not None else None
    if pair is None or src is None or dst is None:
        return V2_SIGNATURE + struct.pack("!BBH", _V2_LOCAL, 0x00, 0)
    s, d = pair
    block = s.packed + d.packed + struct.pack("!HH", src[1], dst[1])
    family = _V2_TCP4 if s.version == 4 else _V2_TCP6
    return V2_SIGNATURE + struct.pack("!BBH", _V2_PROXY, family, len(block)) + block


def encode(version: str, src: SocketAddress | None, dst: SocketAddress | None) -> bytes:
    """The header for config value `version` ("v1" or "v2")."""
    if version == "v1":
        return encode_v1(src, dst)
    if version == "v2":
        return encode_v2(src, dst)
    raise ValueError(f"unknown PROXY protocol version {version!r}")
