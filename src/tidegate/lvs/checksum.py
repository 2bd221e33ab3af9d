"""Internet checksums (RFC 1071) and their incremental update (RFC 1624), as the director needs them.

Theory of operation: the 16-bit ones' complement sum of a buffer equals the buffer read as one big
integer modulo 0xFFFF (because 0x10000 ≡ 1 mod 0xFFFF), except that a non-zero buffer whose sum is
a multiple of 0xFFFF has the sum 0xFFFF ("negative zero"), never 0. Python's big integers do that
reduction in C, which is far faster than a loop over 16-bit words.

Two kinds of checksum field meet the director:
- complete: the field holds ~sum, as on the wire. A rewrite of a 16- or 32-bit word updates it with
  RFC 1624 eqn. 3, HC' = ~(~HC + ~m + m'), never touching the payload.
- partial: a packet with checksum offload pending (virtio-net NEEDS_CSUM, the kernel's
  CHECKSUM_PARTIAL) holds in the field only the pseudo-header sum, not complemented; the device
  sums the rest later. Only rewrites of pseudo-header words (addresses) change it, by + ~m + m'
  (Linux's inet_proto_csum_replace4 with pseudohdr=true does the same).
"""

from __future__ import annotations

import struct

_W2 = struct.Struct("!HH")


def fold(x: int) -> int:
    """Fold a sum of 16-bit words into 16 bits with end-around carry."""
    while x > 0xFFFF:
        x = (x & 0xFFFF) + (x >> 16)
    return x


def ones_sum(data: bytes | bytearray | memoryview, initial: int = 0) -> int:
    """The ones' complement sum of `data` (odd length padded with a zero byte), plus `initial`."""
    n = len(data)
    value = int.from_bytes(data, "big")
    if n & 1:
        value <<= 8
    s = value % 0xFFFF
    if s == 0 and value != 0:
        s = 0xFFFF
    return fold(s + initial) if initial else s


def checksum(data: bytes | bytearray | memoryview, initial: int = 0) -> int:
    """The value for a checksum field whose field bytes in `data` are zero."""
    return ~ones_sum(data, initial) & 0xFFFF


def verify(data: bytes | bytearray | memoryview, initial: int = 0) -> bool:
    """True when `data`, checksum field included, sums to negative zero."""
    return ones_sum(data, initial) == 0xFFFF


def pseudo_header_sum(src: bytes, dst: bytes, proto: int, length: int) -> int:
    """Sum of the IPv4 pseudo-header that TCP and UDP checksums cover (RFC 793, RFC 768)."""
    s = (
        (src[0] << 8 | src[1])
        + (src[2] << 8 | src[3])
        + (dst[0] << 8 | dst[1])
        + (dst[2] << 8 | dst[3])
        + proto
        + length
    )
    return fold(s)


def delta16(old: int, new: int) -> int:
    """The sum to add for one 16-bit word going from `old` to `new` (~m + m')."""
    return (~old & 0xFFFF) + new


def delta32(old: bytes, new: bytes) -> int:
    """The sum to add for a 32-bit field (an IPv4 address) going from `old` to `new`."""
    o1: int
    o2: int
    n1: int
    n2: int
    o1, o2 = _W2.unpack(old)
    n1, n2 = _W2.unpack(new)
    return (~o1 & 0xFFFF) + (~o2 & 0xFFFF) + n1 + n2


def update(check: int, delta: int) -> int:
    """RFC 1624 eqn. 3 on a complete checksum field: HC' = ~(~HC + delta)."""
    return ~fold((~check & 0xFFFF) + delta) & 0xFFFF


def update_partial(check: int, delta: int) -> int:
    """The same change on a partial (offload-pending) field, which holds the sum uncomplemented."""
    return fold(check + delta)
