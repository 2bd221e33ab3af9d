"""What each forwarding method does to a frame: pure functions on bytearrays (or writable
memoryviews) of Ethernet frames. No sockets here; `director.py` decides which to call.

- DR: only the Ethernet addresses change (`set_macs`).
- NAT: destination (in) or source (out) address and port change; the IPv4 header checksum and
  the TCP/UDP checksum are updated incrementally (`rewrite_dst`, `rewrite_src`). A frame whose L4
  checksum is still to be completed by a device ("partial", see checksum.py) gets only the
  pseudo-header part of the change.
- TUN: the IP packet is wrapped whole in an outer IPv4 header, protocol 4 (`encapsulate_ipip`),
  TTL and TOS copied from the inner packet, DF copied too so that path-MTU discovery still works.
  The tunnel costs 20 bytes of MTU: TCP SYNs get their MSS clamped (`clamp_mss`), TCP packets that
  would not fit anyway are cut into segments (`segment_tcp`, what TSO would have done), and other
  packets get an ICMP fragmentation-needed (`icmp_frag_needed`) or, without DF, outer fragments
  (`fragment_ipv4`).
"""

from __future__ import annotations

import struct

from tidegate.lvs.checksum import (
    checksum,
    delta16,
    delta32,
    ones_sum,
    pseudo_header_sum,
    update,
    update_partial,
)
from tidegate.lvs.frame import (
    ACK,
    CWR,
    ETH_LEN,
    ETH_P_IP,
    FIN,
    IP_CHECK,
    IP_DF,
    IP_FRAG,
    IP_ID,
    IP_MF,
    IP_PROTO,
    IP_TOTLEN,
    IPPROTO_ICMP,
    IPPROTO_IPIP,
    IPPROTO_TCP,
    IPPROTO_UDP,
    PSH,
    TCP_CHECK,
    U16,
    U32,
    UDP_CHECK,
    ihl,
    tcp_header_length,
)

Buffer = bytearray | memoryview
_ETH = struct.Struct("!6s6sH")
_IPH = struct.Struct("!BBHHHBBH4s4s")


def set_macs(frame: Buffer, dst: bytes, src: bytes, at: int = 0) -> None:
    """The Ethernet header at `at` goes from src to dst. The source must be the director's own
    address: a bridge that saw the client's address come from the director's port would send the
    real servers' direct replies (DR, TUN) to the director."""
    frame[at : at + 6] = dst
    frame[at + 6 : at + 12] = src


def _rewrite(
    frame: Buffer, l3: int, l4: int, ip_off: int, port_off: int, new_ip: bytes, new_port: int, partial: bool
) -> None:
    proto = frame[l3 + IP_PROTO]
    old_ip = bytes(frame[l3 + ip_off : l3 + ip_off + 4])
    d_ip = delta32(old_ip, new_ip)
    ip_check = U16.unpack_from(frame, l3 + IP_CHECK)[0]
    U16.pack_into(frame, l3 + IP_CHECK, update(ip_check, d_ip))
    frame[l3 + ip_off : l3 + ip_off + 4] = new_ip
    old_port = U16.unpack_from(frame, l4 + port_off)[0]
    U16.pack_into(frame, l4 + port_off, new_port)
    if proto == IPPROTO_TCP:
        at = l4 + TCP_CHECK
    elif proto == IPPROTO_UDP:
        at = l4 + UDP_CHECK
    else:
        return
    check = U16.unpack_from(frame, at)[0]
    if partial:
        # The device sums the ports itself later; only the pseudo-header address moved.
        U16.pack_into(frame, at, update_partial(check, d_ip))
        return
    if proto == IPPROTO_UDP and check == 0:
        return  # the sender sent no UDP checksum (RFC 768); there is none to keep right
    new = update(check, d_ip + delta16(old_port, new_port))
    if proto == IPPROTO_UDP and new == 0:
        new = 0xFFFF
    U16.pack_into(frame, at, new)


def rewrite_dst(frame: Buffer, l3: int, l4: int, new_ip: bytes, new_port: int, partial: bool = False) -> None:
    """NAT inbound: the client's packet to VIP:port goes to the real server's address and port."""
    _rewrite(frame, l3, l4, 16, 2, new_ip, new_port, partial)


def rewrite_src(frame: Buffer, l3: int, l4: int, new_ip: bytes, new_port: int, partial: bool = False) -> None:
    """NAT outbound: the real server's reply goes back out as coming from VIP:port."""
    _rewrite(frame, l3, l4, 12, 0, new_ip, new_port, partial)


def l4_checksum(frame: Buffer, l3: int, l4: int, end: int) -> int:
    """The TCP/UDP checksum the segment frame[l4:end] should carry (its field counted as zero)."""
    proto = frame[l3 + IP_PROTO]
    at = l4 + (TCP_CHECK if proto == IPPROTO_TCP else UDP_CHECK)
    pseudo = pseudo_header_sum(
        bytes(frame[l3 + 12 : l3 + 16]), bytes(frame[l3 + 16 : l3 + 20]), proto, end - l4
    )
    s = ones_sum(frame[l4:at], pseudo)
    s = ones_sum(frame[at + 2 : end], s)
    value = ~s & 0xFFFF
    if proto == IPPROTO_UDP and value == 0:
        value = 0xFFFF
    return value


def complete_checksum(frame: Buffer, csum_start: int, csum_offset: int, end: int) -> None:
    """Do what the device would for an offload-pending frame: the field holds the pseudo-header
    sum; the checksum is the complement of the sum from csum_start to the end of the packet."""
    at = csum_start + csum_offset
    value = ~ones_sum(frame[csum_start:end]) & 0xFFFF
    if value == 0 and csum_offset == UDP_CHECK:
        value = 0xFFFF
    U16.pack_into(frame, at, value)


def ip_header_checksum(frame: Buffer, l3: int) -> None:
    U16.pack_into(frame, l3 + IP_CHECK, 0)
    U16.pack_into(frame, l3 + IP_CHECK, checksum(frame[l3 : l3 + ihl(frame, l3)]))


def tcp_mss(frame: Buffer, l4: int) -> int | None:
    """The MSS option of a TCP header, or None."""
    end = l4 + tcp_header_length(frame, l4)
    i = l4 + 20
    while i < end:
        kind = frame[i]
        if kind == 0:
            return None
        if kind == 1:
            i += 1
            continue
        if i + 1 >= end:
            return None
        length = frame[i + 1]
        if length < 2 or i + length > end:
            return None
        if kind == 2 and length == 4:
            value: int = U16.unpack_from(frame, i + 2)[0]
            return value
        i += length
    return None


def clamp_mss(frame: Buffer, l3: int, l4: int, end: int, limit: int, partial: bool = False) -> bool:
    """Lower the MSS option of a SYN to `limit` (RFC 879); True when it changed."""
    hend = l4 + tcp_header_length(frame, l4)
    i = l4 + 20
    while i < hend:
        kind = frame[i]
        if kind == 0:
            return False
        if kind == 1:
            i += 1
            continue
        if i + 1 >= hend:
            return False
        length = frame[i + 1]
        if length < 2 or i + length > hend:
            return False
        if kind == 2 and length == 4:
            if U16.unpack_from(frame, i + 2)[0] <= limit:
                return False
            U16.pack_into(frame, i + 2, limit)
            if not partial:  # a partial checksum is summed over the options by the device
                # SYNs are small, and the option may sit at an odd offset: recompute.
                U16.pack_into(frame, l4 + TCP_CHECK, l4_checksum(frame, l3, l4, end))
            return True
        i += length
    return False


def encapsulate_ipip(
    frame: Buffer, l3: int, end: int, src: bytes, dst: bytes, ip_id: int, eth_dst: bytes, eth_src: bytes
) -> bytearray:
    """Ethernet + outer IPv4 (proto 4, src → dst) + the inner IP packet frame[l3:end] untouched."""
    inner_len = end - l3
    df = U16.unpack_from(frame, l3 + IP_FRAG)[0] & IP_DF
    out = bytearray(ETH_LEN + 20 + inner_len)
    _ETH.pack_into(out, 0, eth_dst, eth_src, ETH_P_IP)
    _IPH.pack_into(
        out,
        ETH_LEN,
        0x45,
        frame[l3 + 1],  # TOS
        20 + inner_len,
        ip_id & 0xFFFF,
        df,
        frame[l3 + 8],  # TTL
        IPPROTO_IPIP,
        0,
        src,
        dst,
    )
    U16.pack_into(out, ETH_LEN + IP_CHECK, checksum(out[ETH_LEN : ETH_LEN + 20]))
    out[ETH_LEN + 20 :] = frame[l3:end]
    return out


def segment_tcp(frame: Buffer, l3: int, l4: int, end: int, mss: int) -> list[bytearray]:
    """Cut one large TCP segment into frames carrying at most `mss` payload bytes each, with
    complete checksums: sequence numbers advance, IP ids count up, FIN and PSH stay on the last
    piece and CWR on the first (as the kernel's TCP GSO does)."""
    thl = tcp_header_length(frame, l4)
    head = bytes(frame[: l4 + thl])
    payload = memoryview(frame)[l4 + thl : end] if isinstance(frame, bytearray) else frame[l4 + thl : end]
    if len(payload) <= mss:
        one = bytearray(frame[:end])
        _finish(one, l3, l4, thl)
        return [one]
    seq = U32.unpack_from(frame, l4 + 4)[0]
    ip_id = U16.unpack_from(frame, l3 + IP_ID)[0]
    flags = frame[l4 + 13]
    out: list[bytearray] = []
    n = len(payload)
    for k, off in enumerate(range(0, n, mss)):
        chunk = payload[off : off + mss]
        seg = bytearray(head)
        seg += chunk
        U16.pack_into(seg, l3 + IP_TOTLEN, (l4 - l3) + thl + len(chunk))
        U16.pack_into(seg, l3 + IP_ID, (ip_id + k) & 0xFFFF)
        U32.pack_into(seg, l4 + 4, (seq + off) & 0xFFFFFFFF)
        f = flags
        if off + mss < n:
            f &= ~(FIN | PSH)
        if k > 0:
            f &= ~CWR
        seg[l4 + 13] = f
        _finish(seg, l3, l4, thl)
        out.append(seg)
    return out


def _finish(seg: bytearray, l3: int, l4: int, thl: int) -> None:
    ip_header_checksum(seg, l3)
    U16.pack_into(seg, l4 + TCP_CHECK, l4_checksum(seg, l3, l4, len(seg)))


def fragment_ipv4(packet: bytes | bytearray, mtu: int) -> list[bytes]:
    """RFC 791 fragmentation of an IPv4 packet (header without options) into pieces ≤ mtu."""
    hl = ihl(packet, 0)
    if len(packet) <= mtu:
        return [bytes(packet)]
    step = (mtu - hl) // 8 * 8
    if step <= 0:
        raise ValueError("MTU too small to fragment")
    head = bytearray(packet[:hl])
    frag_field = U16.unpack_from(packet, IP_FRAG)[0]
    base = (frag_field & 0x1FFF) * 8
    more = frag_field & IP_MF
    body = packet[hl:]
    out: list[bytes] = []
    for off in range(0, len(body), step):
        chunk = body[off : off + step]
        h = bytearray(head)
        last = off + step >= len(body)
        U16.pack_into(h, IP_TOTLEN, hl + len(chunk))
        U16.pack_into(
            h, IP_FRAG, (frag_field & IP_DF) | (0 if last and not more else IP_MF) | ((base + off) // 8)
        )
        ip_header_checksum(h, 0)
        out.append(bytes(h) + bytes(chunk))
    return out


def icmp_frag_needed(
    frame: Buffer, l3: int, mtu: int, src_ip: bytes, eth_dst: bytes, eth_src: bytes
) -> bytes:
    """ICMP destination unreachable / fragmentation needed (RFC 1191) back to the packet's sender,
    quoting its IP header and first 8 bytes of payload."""
    quote = bytes(frame[l3 : l3 + ihl(frame, l3) + 8])
    icmp = bytearray(struct.pack("!BBHHH", 3, 4, 0, 0, mtu)) + quote
    U16.pack_into(icmp, 2, checksum(icmp))
    ip = bytearray(
        _IPH.pack(0x45, 0, 20 + len(icmp), 0, 0, 64, IPPROTO_ICMP, 0, src_ip, bytes(frame[l3 + 12 : l3 + 16]))
    )
    U16.pack_into(ip, IP_CHECK, checksum(ip))
    return _ETH.pack(eth_dst, eth_src, ETH_P_IP) + bytes(ip) + bytes(icmp)


__all__ = [
    "ACK",
    "clamp_mss",
    "complete_checksum",
    "encapsulate_ipip",
    "fragment_ipv4",
    "icmp_frag_needed",
    "ip_header_checksum",
    "l4_checksum",
    "rewrite_dst",
    "rewrite_src",
    "segment_tcp",
    "set_macs",
    "tcp_mss",
]
