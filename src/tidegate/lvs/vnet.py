"""The virtio-net header that PACKET_VNET_HDR puts before every frame read from or written to the
packet socket (struct virtio_net_hdr, linux/virtio_net.h; host byte order on this side).

Why the director uses it: on veth and on NICs with GRO, the kernel hands packet sockets frames
larger than the MTU (GSO, up to 64 KiB) whose TCP/UDP checksum is still to be completed by a device
(CHECKSUM_PARTIAL). Read without this header those frames cannot be forwarded (too big to send,
wrong checksum). With it the director learns both facts, and by writing the header back it lets the
kernel segment and checksum on the way out, as it would for a local sender.
"""

from __future__ import annotations

import struct
from typing import NamedTuple

VNET = struct.Struct("=BBHHHH")
VNET_LEN = VNET.size  # 10

NEEDS_CSUM = 1  # csum_start/csum_offset say where the checksum is still to be completed
DATA_VALID = 2

GSO_NONE = 0
GSO_TCPV4 = 1
GSO_UDP = 3
GSO_TCPV6 = 4
GSO_UDP_L4 = 5
GSO_ECN = 0x80

PLAIN = bytes(VNET_LEN)  # a header for a complete, ordinary frame


class VnetHeader(NamedTuple):
    flags: int
    gso_type: int
    hdr_len: int
    gso_size: int
    csum_start: int  # from the start of the Ethernet header
    csum_offset: int  # from csum_start to the checksum field

    @property
    def needs_csum(self) -> bool:
        return bool(self.flags & NEEDS_CSUM)

    @property
    def gso(self) -> int:
        return self.gso_type & ~GSO_ECN

    def pack(self) -> bytes:
        return VNET.pack(*self)


def parse(buf: bytes | bytearray | memoryview) -> VnetHeader:
    return VnetHeader._make(VNET.unpack_from(buf, 0))
