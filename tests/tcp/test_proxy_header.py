"""The PROXY protocol encoder against the spec's own examples (haproxy doc/proxy-protocol.txt)."""

from __future__ import annotations

import ipaddress
import struct

import pytest
from hypothesis import given
from hypothesis import strategies as st

from tidegate.tcp.proxy_header import V2_SIGNATURE, encode, encode_v1, encode_v2


def parse_v2(data: bytes) -> tuple[int, int, tuple[str, int] | None, tuple[str, int] | None]:
    """A small parser written from section 2.2, for the round-trip checks only."""
    assert data[:12] == b"\x0d\x0a\x0d\x0a\x00\x0d\x0a\x51\x55\x49\x54\x0a"
    ver_cmd, fam = data[12], data[13]
    (length,) = struct.unpack("!H", data[14:16])
    assert len(data) == 16 + length
    block = data[16:]
    if fam == 0x11:
        s, d = ipaddress.IPv4Address(block[0:4]), ipaddress.IPv4Address(block[4:8])
        sp, dp = struct.unpack("!HH", block[8:12])
    elif fam == 0x21:
        s, d = ipaddress.IPv6Address(block[0:16]), ipaddress.IPv6Address(block[16:32])
        sp, dp = struct.unpack("!HH", block[32:36])
    else:
        return ver_cmd, fam, None, None
    return ver_cmd, fam, (str(s), sp), (str(d), dp)


def test_v1_spec_example_tcp4() -> None:
    # Section 2.1: "PROXY TCP4 192.168.0.1 192.168.0.11 56324 443\r\n"
    assert (
        encode_v1(("192.168.0.1", 56324), ("192.168.0.11", 443))
        == b"PROXY TCP4 192.168.0.1 192.168.0.11 56324 443\r\n"
    )


def test_v1_longest_tcp6_line_fits_the_spec_buffer() -> None:
    top = "ffff:ffff:ffff:ffff:ffff:ffff:ffff:ffff"
    line = encode_v1((top, 65535), (top, 65535))
    assert line == f"PROXY TCP6 {top} {top} 65535 65535\r\n".encode()
    # The spec sizes receivers for 107 bytes (its worst case is UNKNOWN followed by addresses).
    assert len(line) == 104


def test_v1_unknown_without_addresses() -> None:
    assert encode_v1(None, None) == b"PROXY UNKNOWN\r\n"
    assert encode_v1(("/run/sock", 0), ("/run/sock", 0)) == b"PROXY UNKNOWN\r\n"


def test_v1_ipv6_and_mapped_and_mixed() -> None:
    assert (
        encode_v1(("2001:db8::1", 1000), ("2001:db8::2", 80))
        == b"PROXY TCP6 2001:db8::1 2001:db8::2 1000 80\r\n"
    )
    # An IPv4 client on a dual-stack listener: what the client really used is IPv4.
    assert (
        encode_v1(("::ffff:10.0.0.1", 5), ("::ffff:10.0.0.2", 6)) == b"PROXY TCP4 10.0.0.1 10.0.0.2 5 6\r\n"
    )
    # Families differ: both written as IPv6, the IPv4 side mapped (the spec requires one family).
    assert encode_v1(("10.0.0.1", 5), ("::1", 6)) == b"PROXY TCP6 ::ffff:a00:1 ::1 5 6\r\n"
    # Scoped link-local addresses lose the scope, which has no meaning on the instance's side.
    assert (
        encode_v1(("fe80::1%eth0", 5, 0, 2), ("fe80::2%eth0", 6, 0, 2))
        == b"PROXY TCP6 fe80::1 fe80::2 5 6\r\n"
    )


def test_v2_tcp4_bytes() -> None:
    header = encode_v2(("192.168.0.1", 56324), ("192.168.0.11", 443))
    assert header == (
        b"\r\n\r\n\x00\r\nQUIT\n"  # signature
        + b"\x21"  # version 2, PROXY
        + b"\x11"  # TCP over IPv4
        + b"\x00\x0c"  # 12 bytes of addresses
        + bytes([192, 168, 0, 1, 192, 168, 0, 11])
        + struct.pack("!HH", 56324, 443)
    )
    assert len(header) == 28


def test_v2_tcp6_bytes() -> None:
    header = encode_v2(("2001:db8::1", 1), ("2001:db8::2", 2))
    assert header[12:16] == b"\x21\x21\x00\x24"  # v2 PROXY, TCP over IPv6, 36 bytes
    assert len(header) == 16 + 36
    assert parse_v2(header) == (0x21, 0x21, ("2001:db8::1", 1), ("2001:db8::2", 2))


def test_v2_local_without_addresses() -> None:
    # Section 2.2: LOCAL with family UNSPEC and no address block.
    assert encode_v2(None, None) == V2_SIGNATURE + b"\x20\x00\x00\x00"


def test_encode_dispatches_and_rejects() -> None:
    assert encode("v1", ("1.2.3.4", 1), ("5.6.7.8", 2)).startswith(b"PROXY TCP4 ")
    assert encode("v2", ("1.2.3.4", 1), ("5.6.7.8", 2)).startswith(V2_SIGNATURE)
    with pytest.raises(ValueError):
        encode("v3", None, None)


ports = st.integers(0, 65535)
v4 = st.ip_addresses(v=4).map(str)
v6 = st.ip_addresses(v=6).filter(lambda a: a.ipv4_mapped is None).map(str)


@given(st.one_of(st.tuples(v4, v4), st.tuples(v6, v6)), ports, ports)
def test_v2_round_trip(pair: tuple[str, str], sport: int, dport: int) -> None:
    src, dst = pair
    ver_cmd, fam, s, d = parse_v2(encode_v2((src, sport), (dst, dport)))
    assert ver_cmd == 0x21
    assert fam == (0x11 if ":" not in src else 0x21)
    assert s == (str(ipaddress.ip_address(src)), sport)
    assert d == (str(ipaddress.ip_address(dst)), dport)


@given(st.one_of(st.tuples(v4, v4), st.tuples(v6, v6)), ports, ports)
def test_v1_round_trip(pair: tuple[str, str], sport: int, dport: int) -> None:
    src, dst = pair
    line = encode_v1((src, sport), (dst, dport))
    assert line.endswith(b"\r\n") and len(line) <= 107
    word, family, s, d, sp, dp = line[:-2].decode().split(" ")
    assert (word, family) == ("PROXY", "TCP4" if ":" not in src else "TCP6")
    assert ipaddress.ip_address(s) == ipaddress.ip_address(src)
    assert ipaddress.ip_address(d) == ipaddress.ip_address(dst)
    assert (int(sp), int(dp)) == (sport, dport)
