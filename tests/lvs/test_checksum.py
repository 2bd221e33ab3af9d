"""Checksums: the fast sum against a plain word loop, and incremental updates against full
recomputation (RFC 1624), complete and partial (offload-pending) fields alike."""

from __future__ import annotations

import struct

from hypothesis import assume, given
from hypothesis import strategies as st

from tidegate.lvs.checksum import (
    checksum,
    delta16,
    delta32,
    ones_sum,
    pseudo_header_sum,
    update,
    update_partial,
    verify,
)
from tidegate.testing.packets import reference_checksum, reference_sum

ip4s = st.binary(min_size=4, max_size=4)
u16 = st.integers(0, 0xFFFF)


def same_checksum(a: int, b: int) -> bool:
    """Equal, or the two representations of zero (0x0000 and 0xFFFF both verify, RFC 1624 §3)."""
    return a == b or {a, b} == {0, 0xFFFF}


@given(st.binary(max_size=3000))
def test_sum_matches_the_word_loop(data: bytes) -> None:
    assert ones_sum(data) == reference_sum(data)
    assert checksum(data) == reference_checksum(data)


def test_negative_zero_and_zero() -> None:
    assert ones_sum(b"") == 0
    assert ones_sum(b"\x00\x00\x00") == 0
    assert ones_sum(b"\xff\xff") == 0xFFFF
    assert ones_sum(b"\xff\xfe\x00\x01") == 0xFFFF  # a multiple of 0xFFFF that is not zero


@given(st.binary(min_size=2, max_size=200).filter(lambda b: len(b) % 2 == 0), st.integers(0, 99))
def test_filled_in_checksum_verifies(data: bytes, at: int) -> None:
    at = (at % (len(data) // 2)) * 2
    buf = bytearray(data)
    buf[at : at + 2] = b"\x00\x00"
    struct.pack_into("!H", buf, at, checksum(buf))
    assert verify(buf)
    assert reference_sum(bytes(buf)) == 0xFFFF


@given(st.binary(min_size=20, max_size=120).filter(lambda b: len(b) % 2 == 0), st.data())
def test_incremental_word_update_equals_recompute(data: bytes, draw: st.DataObject) -> None:
    words = len(data) // 2
    field = draw.draw(st.integers(0, words - 1)) * 2
    buf = bytearray(data)
    buf[field : field + 2] = b"\x00\x00"
    struct.pack_into("!H", buf, field, checksum(buf))
    # change one 16-bit word and one 32-bit aligned field, neither being the checksum field
    others = [i * 2 for i in range(words) if i * 2 != field]
    w = draw.draw(st.sampled_from(others))
    new16 = draw.draw(u16)
    old16 = struct.unpack_from("!H", buf, w)[0]
    struct.pack_into("!H", buf, w, new16)
    d = delta16(old16, new16)
    quads = [i for i in range(0, len(buf) - 3, 2) if not (i <= field < i + 4) and not (i <= w < i + 4)]
    if quads:
        q = draw.draw(st.sampled_from(quads))
        new32 = draw.draw(ip4s)
        d += delta32(bytes(buf[q : q + 4]), new32)
        buf[q : q + 4] = new32
    incremental = update(struct.unpack_from("!H", buf, field)[0], d)
    buf[field : field + 2] = b"\x00\x00"
    # Data summing to +0 (all zero) has no header of IP, TCP or UDP: a pseudo-header alone has a
    # non-zero protocol. There eqn. 3 gives 0x0000 where only 0xFFFF verifies (RFC 1624 §3).
    assume(any(buf))
    full = checksum(buf)
    assert same_checksum(incremental, full)
    struct.pack_into("!H", buf, field, incremental)
    assert verify(buf)


@given(ip4s, ip4s, ip4s, st.integers(0, 1400), st.binary(max_size=64))
def test_partial_update_then_completion_equals_full(
    src: bytes, dst: bytes, new_dst: bytes, pad: int, body: bytes
) -> None:
    """A partial field (pseudo-header sum only) updated for an address change, then completed as a
    device would, gives the checksum computed from scratch for the new addresses."""
    seg = bytearray(b"\x00" * 20 + body)
    partial = pseudo_header_sum(src, dst, 6, len(seg))
    partial = update_partial(partial, delta32(dst, new_dst))
    struct.pack_into("!H", seg, 16, partial)
    completed = ~ones_sum(seg) & 0xFFFF
    struct.pack_into("!H", seg, 16, 0)
    full = checksum(seg, pseudo_header_sum(src, new_dst, 6, len(seg)))
    assert same_checksum(completed, full)
