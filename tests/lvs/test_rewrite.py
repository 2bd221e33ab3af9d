"""Frame rewrites per forwarding method, checked against frames built and verified independently."""

from __future__ import annotations

import struct

from hypothesis import given
from hypothesis import strategies as st

from tidegate.lvs.frame import ACK, FIN, PSH, SYN, tcp_header_length
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
    tcp_mss,
)
from tidegate.testing.packets import (
    checksums_ok,
    ipv4_frame,
    reference_sum,
    tcp_frame,
    udp_datagram,
)

MAC_A = bytes.fromhex("02000000000a")
MAC_B = bytes.fromhex("02000000000b")
ip4s = st.binary(min_size=4, max_size=4)
ports = st.integers(0, 65535)
payloads = st.binary(max_size=300)
L3, TCP_L4 = 14, 34


@given(ip4s, ip4s, ports, ports, ip4s, ports, payloads, st.integers(0, 0x3F))
def test_nat_rewrite_dst_tcp(
    src: bytes, dst: bytes, sport: int, dport: int, rip: bytes, rport: int, body: bytes, flags: int
) -> None:
    f = tcp_frame(MAC_A, MAC_B, src, dst, sport, dport, flags, body)
    rewrite_dst(f, L3, TCP_L4, rip, rport)
    assert f[30:34] == rip and struct.unpack_from("!H", f, 36)[0] == rport
    assert f[26:30] == src and struct.unpack_from("!H", f, 34)[0] == sport
    assert f[54:] == body
    assert checksums_ok(f)


@given(ip4s, ip4s, ports, ports, ip4s, ports, payloads)
def test_nat_rewrite_src_tcp_back_to_vip(
    src: bytes, dst: bytes, sport: int, dport: int, vip: bytes, vport: int, body: bytes
) -> None:
    f = tcp_frame(MAC_A, MAC_B, src, dst, sport, dport, ACK, body)
    rewrite_src(f, L3, TCP_L4, vip, vport)
    assert f[26:30] == vip and struct.unpack_from("!H", f, 34)[0] == vport
    assert checksums_ok(f)


@given(ip4s, ip4s, ports, ports, ip4s, ports, payloads, st.booleans())
def test_nat_rewrite_udp(
    src: bytes, dst: bytes, sport: int, dport: int, rip: bytes, rport: int, body: bytes, no_sum: bool
) -> None:
    f = ipv4_frame(MAC_A, MAC_B, src, dst, 17, udp_datagram(src, dst, sport, dport, body, no_checksum=no_sum))
    rewrite_dst(f, L3, TCP_L4, rip, rport)
    assert checksums_ok(f)
    if no_sum:
        assert f[40:42] == b"\x00\x00"  # "no checksum" stays so
    else:
        assert f[40:42] != b"\x00\x00"


@given(ip4s, ip4s, ports, ports, ip4s, ports, st.binary(max_size=3000))
def test_nat_on_partial_checksum_then_device_completion(
    src: bytes, dst: bytes, sport: int, dport: int, rip: bytes, rport: int, body: bytes
) -> None:
    """Offload pending: only the pseudo-header part changes here; completing afterwards (what the
    NIC or the receiving kernel does) yields a valid segment for the new addresses."""
    f = tcp_frame(MAC_A, MAC_B, src, dst, sport, dport, ACK, body, partial=True)
    rewrite_dst(f, L3, TCP_L4, rip, rport, partial=True)
    complete_checksum(f, TCP_L4, 16, len(f))
    assert checksums_ok(f)


@given(ip4s, ip4s, st.binary(max_size=2000))
def test_complete_checksum_of_partial_frame(src: bytes, dst: bytes, body: bytes) -> None:
    f = tcp_frame(MAC_A, MAC_B, src, dst, 1, 2, ACK | PSH, body, partial=True)
    complete_checksum(f, TCP_L4, 16, len(f))
    assert checksums_ok(f)
    assert f == tcp_frame(MAC_A, MAC_B, src, dst, 1, 2, ACK | PSH, body)


def test_set_macs() -> None:
    f = tcp_frame(MAC_A, MAC_B, bytes(4), bytes(4), 1, 2, SYN)
    set_macs(f, b"\x01" * 6, b"\x02" * 6)
    assert f[:12] == b"\x01" * 6 + b"\x02" * 6


def _mss_options(pad: int, mss: int) -> bytes:
    opts = b"\x01" * pad + struct.pack("!BBH", 2, 4, mss) + b"\x04\x02"  # NOPs, MSS, SACK-permitted
    return opts + b"\x00" * (-len(opts) % 4)


@given(st.integers(0, 3), st.integers(0, 65535), st.integers(500, 1460), st.booleans())
def test_clamp_mss_at_any_alignment(pad: int, mss: int, limit: int, partial: bool) -> None:
    src, dst = bytes([198, 18, 0, 1]), bytes([198, 18, 0, 100])
    f = tcp_frame(MAC_A, MAC_B, src, dst, 4000, 80, SYN, options=_mss_options(pad, mss), partial=partial)
    changed = clamp_mss(f, L3, TCP_L4, len(f), limit, partial=partial)
    assert changed == (mss > limit)
    assert tcp_mss(f, TCP_L4) == min(mss, limit)
    if partial:
        complete_checksum(f, TCP_L4, 16, len(f))
    assert checksums_ok(f)


def test_no_mss_option_no_change() -> None:
    f = tcp_frame(MAC_A, MAC_B, bytes(4), bytes(4), 1, 2, SYN, options=b"\x01\x01\x01\x00")
    assert not clamp_mss(f, L3, TCP_L4, len(f), 1000)
    assert tcp_mss(f, TCP_L4) is None


@given(st.binary(max_size=1400), st.integers(0, 255), st.integers(1, 255), st.booleans())
def test_ipip_encapsulation(body: bytes, tos: int, ttl: int, df: bool) -> None:
    src, dst = bytes([198, 18, 0, 1]), bytes([198, 18, 0, 100])
    f = tcp_frame(MAC_A, MAC_B, src, dst, 4000, 80, ACK, body, tos=tos, ttl=ttl, df=df)
    outer_src, outer_dst = bytes([198, 18, 0, 2]), bytes([198, 18, 0, 11])
    out = encapsulate_ipip(f, L3, len(f), outer_src, outer_dst, 7, b"\x03" * 6, b"\x04" * 6)
    assert out[:12] == b"\x03" * 6 + b"\x04" * 6 and out[12:14] == b"\x08\x00"
    outer = out[14:34]
    assert outer[0] == 0x45 and outer[1] == tos and outer[8] == ttl and outer[9] == 4
    assert struct.unpack_from("!H", outer, 2)[0] == 20 + len(f) - 14
    assert bool(struct.unpack_from("!H", outer, 6)[0] & 0x4000) == df
    assert outer[12:16] == outer_src and outer[16:20] == outer_dst
    assert reference_sum(bytes(outer)) == 0xFFFF
    assert out[34:] == f[14:]  # the inner packet is untouched
    assert checksums_ok(out, 34)


@given(
    st.binary(min_size=1, max_size=9000),
    st.integers(100, 1460),
    st.sampled_from([ACK, ACK | PSH, ACK | PSH | FIN, ACK | 0x80]),
)
def test_segment_tcp(body: bytes, mss: int, flags: int) -> None:
    src, dst = bytes([198, 18, 0, 1]), bytes([198, 18, 0, 100])
    f = tcp_frame(
        MAC_A,
        MAC_B,
        src,
        dst,
        4000,
        80,
        flags,
        body,
        seq=0xFFFFF000,
        options=b"\x01\x01\x08\x0a" + bytes(8),
        partial=True,
    )
    segs = segment_tcp(f, L3, TCP_L4, len(f), mss)
    got = b""
    seq = 0xFFFFF000
    for k, s in enumerate(segs):
        assert checksums_ok(s)
        thl = tcp_header_length(s, TCP_L4)
        data = bytes(s[TCP_L4 + thl :])
        assert 0 < len(data) <= mss
        assert struct.unpack_from("!I", s, TCP_L4 + 4)[0] == seq
        seq = (seq + len(data)) & 0xFFFFFFFF
        last = k == len(segs) - 1
        assert bool(s[TCP_L4 + 13] & FIN) == (last and bool(flags & FIN))
        assert bool(s[TCP_L4 + 13] & PSH) == (last and bool(flags & PSH))
        assert bool(s[TCP_L4 + 13] & 0x80) == (k == 0 and bool(flags & 0x80))
        got += data
    assert got == body
    assert len(segs) == -(-len(body) // mss)


@given(st.binary(min_size=0, max_size=5000), st.integers(68, 1500))
def test_fragment_ipv4_reassembles(body: bytes, mtu: int) -> None:
    f = ipv4_frame(MAC_A, MAC_B, bytes(4), bytes([1, 2, 3, 4]), 4, body, df=False)
    packet = bytes(f[14:])
    frags = fragment_ipv4(packet, mtu)
    whole = bytearray()
    for k, fr in enumerate(frags):
        assert len(fr) <= mtu
        assert reference_sum(fr[:20]) == 0xFFFF
        field = struct.unpack_from("!H", fr, 6)[0]
        assert (field & 0x1FFF) * 8 == len(whole)
        assert bool(field & 0x2000) == (k < len(frags) - 1)
        whole += fr[20:]
    assert bytes(whole) == body


def test_icmp_frag_needed() -> None:
    src, dst = bytes([198, 18, 0, 1]), bytes([198, 18, 0, 100])
    f = ipv4_frame(MAC_A, MAC_B, src, dst, 17, udp_datagram(src, dst, 5, 53, b"x" * 1500))
    me = bytes([198, 18, 0, 2])
    out = icmp_frag_needed(f, L3, 1480, me, MAC_B, MAC_A)
    assert out[:12] == MAC_B + MAC_A
    assert out[26:30] == me and out[30:34] == src and out[23] == 1
    assert reference_sum(out[14:34]) == 0xFFFF
    icmp = out[34:]
    assert icmp[0] == 3 and icmp[1] == 4 and struct.unpack_from("!H", icmp, 6)[0] == 1480
    assert reference_sum(icmp) == 0xFFFF
    assert icmp[8:] == bytes(f[14 : 14 + 28])
