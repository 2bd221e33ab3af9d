"""A client that holds one keep-alive connection to VIP:80 across a quiesce: one request, then
waits until the test writes to a FIFO, then a second request on the same connection and a clean
close. Prints `first NAME`, then `second NAME clean` or what went wrong."""

from __future__ import annotations

import socket
import sys

vip, fifo = sys.argv[1], sys.argv[2]


def get(sock: socket.socket, f) -> str:  # type: ignore[no-untyped-def]
    sock.sendall(b"GET / HTTP/1.1\r\nHost: vip\r\n\r\n")
    status = f.readline()
    length = 0
    while (line := f.readline()) not in (b"\r\n", b""):
        if line.lower().startswith(b"content-length:"):
            length = int(line.split(b":")[1])
    assert status.startswith(b"HTTP/1.1 200"), status
    return f.read(length).decode().strip()


sock = socket.create_connection((vip, 80), timeout=20)
f = sock.makefile("rb")
print("first", get(sock, f), flush=True)
with open(fifo) as go:
    go.read()
try:
    name = get(sock, f)
    sock.shutdown(socket.SHUT_WR)
    rest = f.read()
    print("second", name, "clean" if rest == b"" else f"extra {rest!r}", flush=True)
except ConnectionResetError:
    print("second reset", flush=True)
