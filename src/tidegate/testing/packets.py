"""Frames built by hand for tests of packet-level code, checked by a deliberately plain RFC 1071
checksum (a loop over 16-bit words) that shares nothing with tidegate.lvs.checksum."""

from __future__ import annotations

import struct


def reference_sum(data: bytes) -> int:
    if len(data) % 2:
        data += b"\x00"
    s = 0
    for i in range(0, len(data), 2):
        s += (data[i] << 8) | data[i + 1]
        s = (s & 0xFFFF) + (s >> 16)
    return s


def reference_checksum(data: bytes) -> int:
    return ~reference_sum(data) & 0xFFFF


def ip_header(
    src: bytes,
    dst: bytes,
    proto: int,
    payload_len: int,
    *,
    ttl: int = 64,
    tos: int = 0,
    ident: int = 1,
    df: bool = True,
    options: bytes = b"",
) -> bytearray:
    hl = 20 + len(options)
    h = (
        bytearray(
            struct.pack(
                "!BBHHHBBH4s4s",
                0x40 | hl // 4,
                tos,
                hl + payload_len,
                ident,
                0x4000 if df else 0,
                ttl,
                proto,
                0,
                src,
                dst,
            )
        )
        + options
    )
    struct.pack_into("!H", h, 10, reference_checksum(bytes(h)))
    return h


def l4_reference(src: bytes, dst: bytes, proto: int, segment: bytes) -> int:
    pseudo = src + dst + struct.pack("!BBH", 0, proto, len(segment))
    value = reference_checksum(pseudo + segment)
    if proto == 17 and value == 0:
        value = 0xFFFF
    return value


def tcp_segment(
    src: bytes,
    dst: bytes,
    sport: int,
    dport: int,
    flags: int,
    payload: bytes = b"",
    *,
    seq: int = 1000,
    ack: int = 0,
    options: bytes = b"",
    partial: bool = False,
) -> bytes:
    """A TCP segment with a correct checksum, or (partial) with only the pseudo-header sum in the
    field, as a sender with checksum offload leaves it."""
    thl = 20 + len(options)
    seg = bytearray(struct.pack("!HHIIBBHHH", sport, dport, seq, ack, (thl // 4) << 4, flags, 65535, 0, 0))
    seg += options + payload
    if partial:
        pseudo = src + dst + struct.pack("!BBH", 0, 6, len(seg))
        struct.pack_into("!H", seg, 16, reference_sum(pseudo))
    else:
        struct.pack_into("!H", seg, 16, l4_reference(src, dst, 6, bytes(seg)))
    return bytes(seg)


def udp_datagram(
    src: bytes, dst: bytes, sport: int, dport: int, payload: bytes = b"", *, no_checksum: bool = False
) -> bytes:
    seg = bytearray(struct.pack("!HHHH", sport, dport, 8 + len(payload), 0)) + payload
    if not no_checksum:
        struct.pack_into("!H", seg, 6, l4_reference(src, dst, 17, bytes(seg)))
    return bytes(seg)


def ether(dst_mac: bytes, src_mac: bytes, ethertype: int, body: bytes) -> bytearray:
    return bytearray(dst_mac + src_mac + struct.pack("!H", ethertype) + body)


def ipv4_frame(
    dst_mac: bytes, src_mac: bytes, src: bytes, dst: bytes, proto: int, l4: bytes, **ip: object
) -> bytearray:
    return ether(dst_mac, src_mac, 0x0800, bytes(ip_header(src, dst, proto, len(l4), **ip)) + l4)  # type: ignore[arg-type]


def tcp_frame(
    dst_mac: bytes,
    src_mac: bytes,
    src: bytes,
    dst: bytes,
    sport: int,
    dport: int,
    flags: int,
    payload: bytes = b"",
    **kw: object,
) -> bytearray:
    ip_kw: dict[str, object] = {k: kw.pop(k) for k in ("ttl", "tos", "ident", "df") if k in kw}
    if "ip_options" in kw:
        ip_kw["options"] = kw.pop("ip_options")
    seg = tcp_segment(src, dst, sport, dport, flags, payload, **kw)  # type: ignore[arg-type]
    return ipv4_frame(dst_mac, src_mac, src, dst, 6, seg, **ip_kw)


def checksums_ok(frame: bytes | bytearray, l3: int = 14) -> bool:
    """IP header and TCP/UDP checksum of an Ethernet frame verify (UDP 0 = none)."""
    frame = bytes(frame)
    hl = (frame[l3] & 15) * 4
    if reference_sum(frame[l3 : l3 + hl]) != 0xFFFF:
        return False
    total = struct.unpack_from("!H", frame, l3 + 2)[0]
    proto = frame[l3 + 9]
    seg = frame[l3 + hl : l3 + total]
    if proto == 17 and struct.unpack_from("!H", seg, 6)[0] == 0:
        return True
    if proto not in (6, 17):
        return True
    pseudo = frame[l3 + 12 : l3 + 20] + struct.pack("!BBH", 0, proto, len(seg))
    return reference_sum(pseudo + seg) == 0xFFFF
