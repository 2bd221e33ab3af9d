"""A userspace IPIP decapsulator for TUN-mode real servers on kernels without the ipip module.

The director sends each client packet wrapped in an outer IPv4 header (protocol 4) addressed to
the real server. Here a raw socket for protocol 4 receives those whole (outer header included);
the inner packet goes to the kernel through a TUN device that holds the VIP, exactly as tunl0
would hand it over. Opening the raw socket also keeps the kernel from answering each packet with
ICMP protocol-unreachable, which it does for protocols nobody handles.

Only inner IPv4 packets addressed to the VIP pass: the decapsulator is no open relay.
"""

from __future__ import annotations

import fcntl
import os
import socket
import struct

TUNSETIFF = 0x400454CA
IFF_TUN = 0x0001
IFF_NO_PI = 0x1000


def open_tun(name: str) -> tuple[int, str]:
    """A TUN device (no packet-info header): its file descriptor and the name the kernel gave it."""
    fd = os.open("/dev/net/tun", os.O_RDWR)
    try:
        ifr = struct.pack("16sH", name.encode(), IFF_TUN | IFF_NO_PI)
        res = fcntl.ioctl(fd, TUNSETIFF, ifr)
    except BaseException:
        os.close(fd)
        raise
    return fd, res[:16].rstrip(b"\0").decode()


def inner_packet(outer: bytes | memoryview, vip: bytes) -> memoryview | None:
    """The inner IPv4 packet of an IPIP packet when it is addressed to vip, else None."""
    view = memoryview(outer)
    if len(view) < 40 or view[0] >> 4 != 4 or view[9] != 4:
        return None
    hl = (view[0] & 0x0F) * 4
    inner = view[hl:]
    if len(inner) < 20 or inner[0] >> 4 != 4 or inner[16:20] != vip:
        return None
    total = (inner[2] << 8) | inner[3]
    return inner[:total] if total <= len(inner) else None


class Decapsulator:
    def __init__(self, vip: bytes, tun_fd: int) -> None:
        self.vip = vip
        self.tun_fd = tun_fd
        self.sock = socket.socket(socket.AF_INET, socket.SOCK_RAW, 4)
        self.sock.setsockopt(socket.SOL_SOCKET, socket.SO_RCVBUF, 4 << 20)
        self.packets = 0
        self.rejected = 0

    def run(self) -> None:
        """Decapsulate until the process is told to stop (a signal handler raising)."""
        buf = bytearray(65536)
        recv = self.sock.recv_into
        write = os.write
        fd = self.tun_fd
        vip = self.vip
        view = memoryview(buf)
        while True:
            n = recv(buf)
            inner = inner_packet(view[:n], vip)
            if inner is None:
                self.rejected += 1
                continue
            write(fd, inner)
            self.packets += 1

    def close(self) -> None:
        self.sock.close()
