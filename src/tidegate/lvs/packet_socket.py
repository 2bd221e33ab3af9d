"""The director's AF_PACKET socket: raw Ethernet frames of one interface, each with a virtio-net
header (PACKET_VNET_HDR, see vnet.py), none of its own transmissions (PACKET_IGNORE_OUTGOING),
and a classic BPF filter so the kernel copies up only what the director may act on: ARP, IPv4 to
the VIP and, for NAT, the service's protocol (the replies of real servers are among those).
"""

from __future__ import annotations

import ctypes
import socket
import struct

SOL_PACKET = 263
PACKET_VNET_HDR = 15
PACKET_IGNORE_OUTGOING = 23
SO_ATTACH_FILTER = 26
SO_RCVBUFFORCE = 33
SO_SNDBUFFORCE = 32
ETH_P_ALL = 0x0003

# sll_pkttype values (linux/if_packet.h)
PACKET_HOST = 0
PACKET_BROADCAST = 1
PACKET_MULTICAST = 2
PACKET_OTHERHOST = 3
PACKET_OUTGOING = 4

_LDB, _LDH, _LDW, _JEQ, _RET = 0x30, 0x28, 0x20, 0x15, 0x06
_SKF_AD_PKTTYPE = 0xFFFFF000 + 4
_ACCEPT = 0x40000
_INSN = struct.Struct("HBBI")


def filter_program(vip: bytes, nat_proto: int | None) -> list[tuple[int, int, int, int]]:
    """cBPF: drop frames for other hosts; accept ARP, IPv4 to vip, and (NAT) IPv4 of nat_proto."""
    body: list[tuple[int, str | None, str | None, int]] = [
        (_LDB, None, None, _SKF_AD_PKTTYPE),
        (_JEQ, "drop", None, PACKET_OTHERHOST),
        (_LDH, None, None, 12),
        (_JEQ, "accept", None, 0x0806),
        (_JEQ, None, "drop", 0x0800),
        (_LDW, None, None, 30),
        (_JEQ, "accept", None if nat_proto is not None else "drop", int.from_bytes(vip, "big")),
    ]
    if nat_proto is not None:
        body += [(_LDB, None, None, 23), (_JEQ, "accept", "drop", nat_proto)]
    labels = {"drop": len(body), "accept": len(body) + 1}
    prog: list[tuple[int, int, int, int]] = []
    for i, (code, jt, jf, k) in enumerate(body):
        t = labels[jt] - i - 1 if jt else 0
        f = labels[jf] - i - 1 if jf else 0
        prog.append((code, t, f, k))
    prog += [(_RET, 0, 0, 0), (_RET, 0, 0, _ACCEPT)]
    return prog


def attach_filter(sock: socket.socket, prog: list[tuple[int, int, int, int]]) -> None:
    raw = b"".join(_INSN.pack(*insn) for insn in prog)
    buf = ctypes.create_string_buffer(raw, len(raw))
    fprog = struct.pack("HL", len(prog), ctypes.addressof(buf))
    sock.setsockopt(socket.SOL_SOCKET, SO_ATTACH_FILTER, fprog)


def open_packet_socket(
    ifname: str, vip: bytes, nat_proto: int | None, buffer: int = 8 << 20
) -> socket.socket:
    # Protocol 0 receives nothing until bind() names the interface: no frame of another one slips in.
    sock = socket.socket(socket.AF_PACKET, socket.SOCK_RAW, 0)
    try:
        # The filter goes on before bind so that no unfiltered frame is ever queued.
        attach_filter(sock, filter_program(vip, nat_proto))
        sock.setsockopt(SOL_PACKET, PACKET_VNET_HDR, 1)
        sock.setsockopt(SOL_PACKET, PACKET_IGNORE_OUTGOING, 1)
        for opt, fallback in ((SO_RCVBUFFORCE, socket.SO_RCVBUF), (SO_SNDBUFFORCE, socket.SO_SNDBUF)):
            try:
                sock.setsockopt(socket.SOL_SOCKET, opt, buffer)
            except OSError:
                sock.setsockopt(socket.SOL_SOCKET, fallback, buffer)
        sock.bind((ifname, ETH_P_ALL))
        sock.setblocking(False)
    except BaseException:
        sock.close()
        raise
    return sock
