"""The DNS service's UDP socket read and answered in batches: recvmmsg and sendmmsg (Linux).

Why: a DNS query costs little to answer from the packet cache, and what is left is the kernel,
where a system call per datagram each way (recvmsg, sendmsg: what the asyncio datagram
transports do) costs more than the answer. gdnsd reads and writes up to dozens of datagrams per
call; so does this. The stdlib socket module has neither call (nor does uvloop's transport), so
they are called through ctypes, with the structures declared to ctypes (it lays them out as the C
compiler does) and the buffers allocated once.

Theory of operation: when the socket is readable, `recvmmsg` fills up to `BATCH` slots (a buffer
and an address each); every datagram is answered by the handler, its answer copied into the send
slot of the same index, whose address is the query's own slot; one `sendmmsg` sends the answers
(runs of them, around a datagram that got none). A datagram longer than a slot (MSG_TRUNC) is
dropped: cut short, it might parse as some other query. An answer that does not fit its send slot
(never for UDP: answers are at most 1,232 bytes) goes out alone with sendto. When the send buffer
is full the answers left are dropped, as the kernel drops queries when the receive buffer is; the
client asks again. Where recvmmsg is not available, `available()` says so and the service keeps the
event loop's datagram transport.
"""

from __future__ import annotations

import asyncio
import ctypes
import ctypes.util
import errno
import socket
import struct
import sys
from collections.abc import Callable
from typing import TYPE_CHECKING, Any

if TYPE_CHECKING:
    from tidegate.dns.figures import Figures

BATCH = 64  # datagrams per system call
RECV_SLOT = 4096  # a query's bytes at most (a bigger one is dropped: MSG_TRUNC)
SEND_SLOT = 1232  # OUR_PAYLOAD in handler.py: no UDP answer is bigger
ADDR_SLOT = 128  # sizeof(struct sockaddr_storage)
ROUNDS = 4  # batches per readiness callback, so TCP and timers get their turn
MSG_DONTWAIT = 0x40
MSG_TRUNC = 0x20

Answer = Callable[[bytes], "bytes | None"]


class _Iovec(ctypes.Structure):
    _fields_ = [("base", ctypes.c_void_p), ("len", ctypes.c_size_t)]


class _Msghdr(ctypes.Structure):
    _fields_ = [
        ("name", ctypes.c_void_p),
        ("namelen", ctypes.c_uint32),
        ("iov", ctypes.c_void_p),
        ("iovlen", ctypes.c_size_t),
        ("control", ctypes.c_void_p),
        ("controllen", ctypes.c_size_t),
        ("flags", ctypes.c_int),
    ]


class _Mmsghdr(ctypes.Structure):
    _fields_ = [("hdr", _Msghdr), ("len", ctypes.c_uint)]


_MSG = ctypes.sizeof(_Mmsghdr)
_IOV = ctypes.sizeof(_Iovec)
# Where, inside one mmsghdr, the kernel writes what a read needs: the datagram's flags and length.
_FLAGS_AT = _Mmsghdr.hdr.offset + _Msghdr.flags.offset
_LEN_AT = _Mmsghdr.len.offset
_FLAGS_LEN = struct.Struct(f"=i{_LEN_AT - _FLAGS_AT - 4}xI")
_SIZE = struct.Struct("=Q" if ctypes.sizeof(ctypes.c_size_t) == 8 else "=I")  # an iovec's length
_IOV_LEN_AT = _Iovec.len.offset


def _libc() -> Any:
    if not sys.platform.startswith("linux"):
        return None
    try:
        libc = ctypes.CDLL(ctypes.util.find_library("c"), use_errno=True)
        recv, send = libc.recvmmsg, libc.sendmmsg
    except (OSError, AttributeError):
        return None
    recv.argtypes = [ctypes.c_int, ctypes.c_void_p, ctypes.c_uint, ctypes.c_int, ctypes.c_void_p]
    recv.restype = ctypes.c_int
    send.argtypes = [ctypes.c_int, ctypes.c_void_p, ctypes.c_uint, ctypes.c_int]
    send.restype = ctypes.c_int
    return libc


_LIBC = _libc()


def available() -> bool:
    return _LIBC is not None


class BatchUdp:
    """Serves one UDP socket with `answer` (a datagram in, at most one out)."""

    def __init__(self, sock: socket.socket, answer: Answer, figures: Figures | None = None) -> None:
        assert _LIBC is not None
        self.figures = figures  # its `dropped` counts these drops too (tidegate_dns_dropped_total)
        self.sock = sock
        self.fd = sock.fileno()
        self.answer = answer
        self.loop: asyncio.AbstractEventLoop | None = None
        self.dropped = 0  # datagrams cut short, and answers the send buffer had no room for
        self._recv_buf = ctypes.create_string_buffer(RECV_SLOT * BATCH)
        self._send_buf = ctypes.create_string_buffer(SEND_SLOT * BATCH)
        self._addrs = ctypes.create_string_buffer(ADDR_SLOT * BATCH)
        self._recv_iov = (_Iovec * BATCH)()
        self._send_iov = (_Iovec * BATCH)()
        self._recv = (_Mmsghdr * BATCH)()
        self._send = (_Mmsghdr * BATCH)()
        # The address length the kernel writes for this socket's family: sockaddr_in6, sockaddr_in.
        namelen = 28 if sock.family == socket.AF_INET6 else 16
        addrs = ctypes.addressof(self._addrs)
        for i in range(BATCH):
            self._recv_iov[i].base = ctypes.addressof(self._recv_buf) + i * RECV_SLOT
            self._recv_iov[i].len = RECV_SLOT
            rh = self._recv[i].hdr
            rh.name = addrs + i * ADDR_SLOT
            rh.namelen = ADDR_SLOT
            rh.iov = ctypes.addressof(self._recv_iov) + i * _IOV
            rh.iovlen = 1
            self._send_iov[i].base = ctypes.addressof(self._send_buf) + i * SEND_SLOT
            sh = self._send[i].hdr
            sh.name = addrs + i * ADDR_SLOT
            sh.namelen = namelen
            sh.iov = ctypes.addressof(self._send_iov) + i * _IOV
            sh.iovlen = 1
        self._recv_at = ctypes.addressof(self._recv)
        self._send_at = ctypes.addressof(self._send)
        self._recv_view = memoryview(self._recv_buf).cast("B")
        self._send_view = memoryview(self._send_buf).cast("B")
        self._recv_msgs = memoryview(self._recv).cast("B")
        self._send_iovs = memoryview(self._send_iov).cast("B")

    def _drop(self, n: int) -> None:
        self.dropped += n
        if self.figures is not None:
            self.figures.dropped += n

    def start(self, loop: asyncio.AbstractEventLoop) -> None:
        self.sock.setblocking(False)
        self.loop = loop
        loop.add_reader(self.fd, self._readable)

    def close(self) -> None:
        if self.loop is not None:
            self.loop.remove_reader(self.fd)
            self.loop = None
        self.sock.close()

    def _readable(self) -> None:
        for _ in range(ROUNDS):
            if self._batch() < BATCH:
                return

    def _batch(self) -> int:
        libc = _LIBC
        n = int(libc.recvmmsg(self.fd, self._recv_at, BATCH, MSG_DONTWAIT, None))
        if n <= 0:
            return 0
        recv_view, send_view = self._recv_view, self._send_view
        msgs, iovs = self._recv_msgs, self._send_iovs
        answer = self.answer
        first = 0  # the first slot of the run of answers not sent yet
        for i in range(n):
            flags, size = _FLAGS_LEN.unpack_from(msgs, i * _MSG + _FLAGS_AT)
            out = None
            if flags & MSG_TRUNC:
                self._drop(1)
            else:
                start = i * RECV_SLOT
                out = answer(bytes(recv_view[start : start + size]))
            if out is not None and len(out) <= SEND_SLOT:
                at = i * SEND_SLOT
                send_view[at : at + len(out)] = out
                _SIZE.pack_into(iovs, i * _IOV + _IOV_LEN_AT, len(out))
                continue
            # No answer in slot i: send the run before it, and an oversized answer alone.
            self._send_run(first, i)
            first = i + 1
            if out is not None:
                self._send_alone(i, out)
        self._send_run(first, n)
        return n

    def _send_run(self, first: int, end: int) -> None:
        while first < end:
            sent = int(_LIBC.sendmmsg(self.fd, self._send_at + first * _MSG, end - first, MSG_DONTWAIT))
            if sent > 0:
                first += sent
            elif ctypes.get_errno() in (errno.EAGAIN, errno.EWOULDBLOCK, errno.ENOBUFS):
                self._drop(end - first)  # the send buffer is full: as datagrams lost
                return
            else:
                self._drop(1)  # this answer's address cannot be sent to: skip it
                first += 1

    def _send_alone(self, i: int, out: bytes) -> None:
        at = i * ADDR_SLOT
        name = bytes(memoryview(self._addrs).cast("B")[at : at + ADDR_SLOT])
        family = int.from_bytes(name[:2], sys.byteorder)
        try:
            if family == socket.AF_INET6:
                scope = int.from_bytes(name[24:28], sys.byteorder)
                addr: tuple[Any, ...] = (
                    socket.inet_ntop(family, name[8:24]),
                    int.from_bytes(name[2:4], "big"),
                    0,
                    scope,
                )
            else:
                addr = (socket.inet_ntop(family, name[4:8]), int.from_bytes(name[2:4], "big"))
            self.sock.sendto(out, addr)
        except OSError:
            self._drop(1)
