"""Peers for testing TCP proxies through real sockets: instances that name themselves, addresses
that refuse or hang, and bulk endpoints that hash what they send and receive.

Used by tidegate's own tests of the `[[tcp]]` layer; usable against any TCP proxy.
"""

from __future__ import annotations

import asyncio
import hashlib
import random
import socket
import socketserver
import threading
from dataclasses import dataclass, field


class NamedEcho:
    """An instance that says its name (one line) on each new connection, then echoes."""

    def __init__(self, name: str) -> None:
        self.name = name
        self.server: asyncio.Server | None = None
        self.address = ""
        self.connections = 0

    async def start(self, host: str = "127.0.0.1") -> NamedEcho:
        self.server = await asyncio.start_server(self._serve, host, 0)
        self.address = f"{host}:{self.server.sockets[0].getsockname()[1]}"
        return self

    async def _serve(self, reader: asyncio.StreamReader, writer: asyncio.StreamWriter) -> None:
        self.connections += 1
        writer.write(self.name.encode() + b"\n")
        try:
            while data := await reader.read(65536):
                writer.write(data)
                await writer.drain()
        except ConnectionError:
            pass
        writer.close()

    async def close(self) -> None:
        if self.server is not None:
            self.server.close()


class ThreadedNamedEcho(socketserver.ThreadingTCPServer):
    """NamedEcho for tests without an event loop: a thread per connection, stop with close()."""

    daemon_threads = True
    block_on_close = False

    def __init__(self, name: str) -> None:
        self.name = name
        super().__init__(("127.0.0.1", 0), _EchoHandler)
        self.address = f"127.0.0.1:{self.server_address[1]}"
        self._thread = threading.Thread(target=self.serve_forever, daemon=True)
        self._thread.start()

    def close(self) -> None:
        self.shutdown()
        self.server_close()


class _EchoHandler(socketserver.BaseRequestHandler):
    def handle(self) -> None:
        sock: socket.socket = self.request
        sock.sendall(self.server.name.encode() + b"\n")  # type: ignore[attr-defined]
        try:
            while data := sock.recv(65536):
                sock.sendall(data)
        except OSError:
            pass


class AddressBox:
    """Addresses that fail in known ways; close() releases them."""

    def __init__(self) -> None:
        self._socks: list[socket.socket] = []

    def refused(self) -> str:
        """Nothing listens there: the port is bound (so nobody else takes it), never listened on."""
        s = socket.socket()
        s.bind(("127.0.0.1", 0))
        self._socks.append(s)
        return f"127.0.0.1:{s.getsockname()[1]}"

    def blackhole(self) -> str:
        """Connects hang: a listener whose accept queue is full, so the kernel drops new SYNs."""
        lsock = socket.socket()
        lsock.bind(("127.0.0.1", 0))
        lsock.listen(0)
        filler = socket.create_connection(lsock.getsockname(), timeout=2)
        self._socks += [lsock, filler]
        return f"127.0.0.1:{lsock.getsockname()[1]}"

    def close(self) -> None:
        for s in self._socks:
            s.close()
        self._socks.clear()


def pattern(seed: int, period: int = (1 << 20) + 7) -> bytes:
    """Pseudo-random bytes whose period (1 MiB + 7) aligns with no read or write size, so a
    chunk dropped, doubled or reordered anywhere changes the hash."""
    return random.Random(seed).randbytes(period)


@dataclass
class Tally:
    nbytes: int = 0
    digest: str = ""
    error: BaseException | None = None


@dataclass
class BulkEnd:
    """One end of a bulk transfer over `sock`: sends `size` bytes of `pattern(seed)` then FIN,
    and at the same time reads to EOF; both directions hashed with sha256. Threads, so the
    hashing (which releases the GIL) and the socket calls overlap."""

    sock: socket.socket
    size: int
    seed: int
    sent: Tally = field(default_factory=Tally)
    received: Tally = field(default_factory=Tally)

    def start(self) -> BulkEnd:
        self._threads = [
            threading.Thread(target=self._send, daemon=True),
            threading.Thread(target=self._recv, daemon=True),
        ]
        for t in self._threads:
            t.start()
        return self

    def join(self, timeout: float) -> None:
        for t in self._threads:
            t.join(timeout)
            if t.is_alive():
                raise TimeoutError("bulk transfer did not finish in time")
        self.sock.close()
        for tally in (self.sent, self.received):
            if tally.error is not None:
                raise tally.error

    def _send(self) -> None:
        try:
            block = memoryview(pattern(self.seed))
            h = hashlib.sha256()
            left = self.size
            while left:
                chunk = block[: min(left, len(block))]
                h.update(chunk)
                self.sock.sendall(chunk)
                left -= len(chunk)
            self.sock.shutdown(socket.SHUT_WR)
            self.sent.nbytes, self.sent.digest = self.size, h.hexdigest()
        except BaseException as exc:
            self.sent.error = exc

    def _recv(self) -> None:
        try:
            h = hashlib.sha256()
            buf = bytearray(1 << 20)
            view = memoryview(buf)
            n = 0
            while k := self.sock.recv_into(buf):
                h.update(view[:k])
                n += k
            self.received.nbytes, self.received.digest = n, h.hexdigest()
        except BaseException as exc:
            self.received.error = exc
