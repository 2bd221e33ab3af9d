"""Fault-injecting HTTP/1.1 instances on real sockets, for tidegate's tests and for yours.

Each `FaultInstance` listens on 127.0.0.1 (port 0 by default) and behaves as its `Mode` says;
a thread accepts and one thread per connection serves it, so a test drives a gateway with plain
blocking clients and asserts on what every instance saw (`seen`, one `Seen` per request that
arrived, answered or not). The faults are the ones docs/architecture.md's retry table tells apart:

| mode / how                   | what the gateway sees                                          |
| ---------------------------- | -------------------------------------------------------------- |
| `listen=False`, or `close()` | connection refused (bound, never listening / listener closed)  |
| CLOSE                        | accepted, request read, closed without a byte of response      |
|                              | (`close_after=N`: closed once N body bytes arrived, mid-upload) |
| RESET                        | status line, headers and part of the body, then a TCP reset    |
| HEAD_ONLY                    | status line and headers of a short body, then closed before it |
| DRAIN                        | 503 + `Tidegate-Draining: 1` + `Connection: close`, unprocessed |
| SLOW                         | request read, answered after `delay` s (None: never)           |
| KEEPALIVE_CLOSE              | first request on a connection answered (keep-alive); a second  |
|                              | one on it is read and the connection closed unanswered — the   |
|                              | instance closing an idle keep-alive connection as it is reused |
| STATUS                       | answers `status` (default 503, no drain header), keep-alive    |
| BLACKHOLE                    | connecting times out (a full accept queue drops the SYNs)      |
| ECHO                         | 200 with JSON: method, path, body length and sha256, instance |

A refusing instance becomes an accepting one with `listen()` (same port: "refuses, then
accepts"); `mode` may be changed while it runs. Run one as a separate process (to SIGKILL it) with
`python -m tidegate.testing.faults MODE --port P`; it prints `tidegate: fault listening on
HOST:PORT` once bound, like every tidegate listener. Requests are parsed with httptools.
"""

from __future__ import annotations

import argparse
import array
import contextlib
import fcntl
import hashlib
import json
import signal
import socket
import struct
import sys
import termios
import threading
import time
from dataclasses import dataclass, field
from enum import StrEnum

import httptools

DRAIN_HEADER = b"Tidegate-Draining"
RECV_SIZE = 256 * 1024


class Mode(StrEnum):
    ECHO = "echo"
    CLOSE = "close"
    RESET = "reset"
    DRAIN = "drain"
    SLOW = "slow"
    KEEPALIVE_CLOSE = "keepalive-close"
    BLACKHOLE = "blackhole"
    HEAD_ONLY = "head-only"
    STATUS = "status"


@dataclass
class Seen:
    """One request as the instance received it."""

    method: str
    path: str
    request_id: str | None
    connection: int  # the instance's connection counter: which connection carried it
    index_on_connection: int  # 0 for the first request on its connection
    body_bytes: int = 0
    sha256: str = ""
    answered: bool = False


@dataclass
class _Request:
    method: str = ""
    url: bytes = b""
    headers: dict[bytes, bytes] = field(default_factory=dict)
    hasher: hashlib._Hash = field(default_factory=hashlib.sha256)
    body_bytes: int = 0
    keep_alive: bool = True


class FaultInstance:
    """One instance with one fault (or none). Use as a context manager, or call `close()`."""

    def __init__(
        self,
        mode: Mode | str = Mode.ECHO,
        *,
        name: str | None = None,
        host: str = "127.0.0.1",
        port: int = 0,
        listen: bool = True,
        delay: float | None = None,
        status: int = 503,
        close_after: int | None = None,
        log_requests: bool = False,
    ) -> None:
        self.mode = Mode(mode)
        self.delay = delay  # SLOW: seconds before answering (None = never); ECHO: added latency
        self.status = status  # STATUS: what every request gets
        # CLOSE: close once this many body bytes arrived (mid-upload) instead of after the body.
        self.close_after = close_after
        self.log_requests = log_requests
        self._sock = socket.socket(socket.AF_INET, socket.SOCK_STREAM)
        self._sock.setsockopt(socket.SOL_SOCKET, socket.SO_REUSEADDR, 1)
        self._sock.bind((host, port))
        self.host, self.port = self._sock.getsockname()[:2]
        self.name = name or f"{self.host}:{self.port}"
        self.seen: list[Seen] = []
        self.connections = 0
        self._lock = threading.Lock()
        self._seen_changed = threading.Condition(self._lock)
        self._closing = threading.Event()
        self._conns: set[socket.socket] = set()
        self._threads: list[threading.Thread] = []
        self._listening = False
        self._filler: socket.socket | None = None
        if listen:
            self.listen()

    @property
    def address(self) -> str:
        return f"{self.host}:{self.port}"

    @property
    def listening(self) -> bool:
        return self._listening

    def listen(self) -> None:
        """Start accepting (until now connecting was refused: the socket was bound, not listening)."""
        if self._listening:
            return
        self._listening = True
        if self.mode is Mode.BLACKHOLE:
            # Backlog 0 holds one connection; with it taken (and never accepted) Linux drops
            # every further SYN (net.ipv4.tcp_abort_on_overflow = 0, the default).
            self._sock.listen(0)
            self._filler = socket.create_connection((self.host, self.port), timeout=5)
            return
        self._sock.listen(128)
        t = threading.Thread(target=self._accept_loop, name=f"fault-{self.name}", daemon=True)
        t.start()
        self._threads.append(t)

    def close(self) -> None:
        """Close the listener and every connection: from now on connecting is refused."""
        self._closing.set()
        with contextlib.suppress(OSError):
            self._sock.shutdown(socket.SHUT_RDWR)  # wakes the accept() blocked in the thread
        self._sock.close()
        if self._filler is not None:
            self._filler.close()
        with self._lock:
            conns = list(self._conns)
        for c in conns:
            with contextlib.suppress(OSError):
                c.shutdown(socket.SHUT_RDWR)
        for t in self._threads:
            t.join(5)

    def __enter__(self) -> FaultInstance:
        return self

    def __exit__(self, *exc: object) -> None:
        self.close()

    def requests(self, method: str | None = None) -> list[Seen]:
        with self._lock:
            return [s for s in self.seen if method is None or s.method == method]

    def wait_seen(self, n: int = 1, timeout: float = 10.0) -> list[Seen]:
        """Block until at least `n` requests arrived; AssertionError after `timeout` seconds."""
        with self._seen_changed:
            if not self._seen_changed.wait_for(lambda: len(self.seen) >= n, timeout):
                raise AssertionError(f"{self.name} saw {len(self.seen)} requests, not {n}, in {timeout}s")
            return list(self.seen)

    # --- serving ---------------------------------------------------------------------------
    def _accept_loop(self) -> None:
        while not self._closing.is_set():
            try:
                conn, _ = self._sock.accept()
            except OSError:
                return
            with self._lock:
                self.connections += 1
                number = self.connections
                self._conns.add(conn)
                # Forget finished connection threads so a long run does not pile them up.
                self._threads = [t for t in self._threads if t.is_alive()]
                t = threading.Thread(target=self._serve, args=(conn, number), daemon=True)
                self._threads.append(t)
            t.start()

    def _serve(self, conn: socket.socket, number: int) -> None:
        try:
            self._serve_requests(conn, number)
        except OSError:
            pass
        finally:
            with self._lock:
                self._conns.discard(conn)
            with contextlib.suppress(OSError):
                conn.close()

    def _serve_requests(self, conn: socket.socket, number: int) -> None:
        conn.setsockopt(socket.IPPROTO_TCP, socket.TCP_NODELAY, 1)
        done: list[_Request] = []
        current = _Request()

        class Callbacks:
            def on_url(self, url: bytes) -> None:
                current.url += url

            def on_header(self, name: bytes, value: bytes) -> None:
                current.headers[name.lower()] = value

            def on_body(self, body: bytes) -> None:
                current.hasher.update(body)
                current.body_bytes += len(body)

            def on_message_complete(self) -> None:
                nonlocal current
                current.method = parser.get_method().decode("latin-1")
                current.keep_alive = parser.should_keep_alive()
                done.append(current)
                current = _Request()

        parser = httptools.HttpRequestParser(Callbacks())
        index = 0
        while not self._closing.is_set():
            data = conn.recv(RECV_SIZE)
            if not data:
                return
            try:
                parser.feed_data(data)
            except httptools.HttpParserError:
                conn.sendall(b"HTTP/1.1 400 Bad Request\r\nContent-Length: 0\r\nConnection: close\r\n\r\n")
                return
            while done:
                req = done.pop(0)
                if not self._answer(conn, req, number, index):
                    return
                index += 1
            if (
                self.mode is Mode.CLOSE
                and self.close_after is not None
                and current.body_bytes >= self.close_after
            ):
                current.method = parser.get_method().decode("latin-1")
                self._answer(conn, current, number, index)  # recorded with the body so far; closes
                return

    def _answer(self, conn: socket.socket, req: _Request, number: int, index: int) -> bool:
        """Act on one complete request; False closes the connection."""
        path = httptools.parse_url(req.url).path.decode("latin-1") if req.url else "/"
        rid = req.headers.get(b"x-request-id")
        seen = Seen(
            req.method,
            path,
            rid.decode("latin-1") if rid is not None else None,
            number,
            index,
            req.body_bytes,
            req.hasher.hexdigest(),
        )
        with self._seen_changed:
            self.seen.append(seen)
            self._seen_changed.notify_all()
        if self.log_requests:
            print(f"fault: {self.name} got {req.method} {path} id={seen.request_id}", flush=True)
        mode = self.mode
        if mode is Mode.CLOSE or (mode is Mode.KEEPALIVE_CLOSE and index > 0):
            return False
        if mode is Mode.DRAIN:
            seen.answered = True
            conn.sendall(_response(503, b"draining\n", [(DRAIN_HEADER, b"1"), (b"Connection", b"close")]))
            _close_gracefully(conn)
            return False
        if mode is Mode.STATUS:
            seen.answered = True
            conn.sendall(_response(self.status, b"failing\n", [(b"X-Instance", self.name.encode())]))
            return req.keep_alive
        if mode is Mode.SLOW and self._closing.wait(self.delay):
            return False
        if mode is Mode.ECHO and self.delay:
            self._closing.wait(self.delay)
        body = json.dumps(
            {
                "instance": self.name,
                "method": req.method,
                "path": path,
                "bytes": req.body_bytes,
                "sha256": seen.sha256,
                "request_id": seen.request_id,
            }
        ).encode()
        extra = [(b"X-Instance", self.name.encode()), (b"Content-Type", b"application/json")]
        if mode is Mode.RESET:
            # Promise far more than is sent, then reset: the response is cut mid-body.
            seen.answered = True
            conn.sendall(_response(200, b"", extra, content_length=len(body) + 1_000_000) + body)
            # A reset discards what the kernel has not sent yet: wait until the peer has it all.
            _wait_sent(conn)
            conn.setsockopt(socket.SOL_SOCKET, socket.SO_LINGER, struct.pack("ii", 1, 0))
            return False
        if mode is Mode.HEAD_ONLY and req.method != "HEAD":
            # The head of a short body, then gone (an instance killed between two writes).
            conn.sendall(_response(200, b"", extra, content_length=len(body)))
            _wait_sent(conn)
            return False
        if not req.keep_alive:
            extra.append((b"Connection", b"close"))
        seen.answered = True
        conn.sendall(_response(200, b"" if req.method == "HEAD" else body, extra, len(body)))
        return req.keep_alive


_REASONS = {200: b"OK", 500: b"Internal Server Error", 502: b"Bad Gateway", 503: b"Service Unavailable"}


def _response(
    status: int, body: bytes, headers: list[tuple[bytes, bytes]], content_length: int | None = None
) -> bytes:
    length = len(body) if content_length is None else content_length
    lines = [b"HTTP/1.1 %d %s" % (status, _REASONS.get(status, b"Status"))]
    lines += [b"%s: %s" % (k, v) for k, v in headers]
    lines.append(b"Content-Length: %d" % length)
    return b"\r\n".join(lines) + b"\r\n\r\n" + body


def _wait_sent(conn: socket.socket, timeout: float = 2.0) -> None:
    """Until the kernel's send queue for `conn` is empty (everything acknowledged by the peer)."""
    outq = array.array("i", [0])
    deadline = time.monotonic() + timeout
    while time.monotonic() < deadline:
        fcntl.ioctl(conn.fileno(), termios.TIOCOUTQ, outq)
        if outq[0] == 0:
            return
        time.sleep(0.001)


def _close_gracefully(conn: socket.socket) -> None:
    """Send FIN, then wait (briefly) for the peer's, so unread input cannot turn it into a reset."""
    with contextlib.suppress(OSError):
        conn.shutdown(socket.SHUT_WR)
        conn.settimeout(2.0)
        while conn.recv(RECV_SIZE):
            pass


def main(argv: list[str] | None = None) -> int:
    ap = argparse.ArgumentParser(prog="python -m tidegate.testing.faults", description=__doc__.split("\n")[0])
    ap.add_argument("mode", choices=[m.value for m in Mode])
    ap.add_argument("--host", default="127.0.0.1")
    ap.add_argument("--port", type=int, default=0)
    ap.add_argument("--name")
    ap.add_argument("--delay", type=float)
    ap.add_argument("--status", type=int, default=503)
    ap.add_argument("--log-requests", action="store_true")
    ap.add_argument("--refuse", action="store_true", help="bind, but do not listen (refuse)")
    args = ap.parse_args(argv)
    stop = threading.Event()
    signal.signal(signal.SIGTERM, lambda *_: stop.set())
    signal.signal(signal.SIGINT, lambda *_: stop.set())
    inst = FaultInstance(
        args.mode,
        name=args.name,
        host=args.host,
        port=args.port,
        listen=not args.refuse,
        delay=args.delay,
        status=args.status,
        log_requests=args.log_requests,
    )
    print(f"tidegate: fault listening on {inst.address}", file=sys.stderr, flush=True)
    stop.wait()
    inst.close()
    return 0


if __name__ == "__main__":
    sys.exit(main())
