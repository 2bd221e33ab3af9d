"""Raw-socket HTTP for tests: send exact bytes, parse what comes back with httptools."""

from __future__ import annotations

import contextlib
import socket

import httptools


class Response:
    def __init__(self) -> None:
        self.status = 0
        self.headers: list[tuple[str, str]] = []
        self.body = bytearray()
        self.complete = False

    def header(self, name: str) -> str | None:
        for k, v in self.headers:
            if k.lower() == name.lower():
                return v
        return None

    def header_names(self) -> set[str]:
        return {k.lower() for k, _ in self.headers}


class _Parse:
    """One response parsed from the start of some bytes; `begun` counts the messages llhttp
    began in them (2: the next response started in the same bytes)."""

    def __init__(self, head_request: bool) -> None:
        self.resp = Response()
        self.begun = 0
        self.head_request = head_request
        self.parser = httptools.HttpResponseParser(self)

    def on_message_begin(self) -> None:
        self.begun += 1

    def on_header(self, name: bytes, value: bytes) -> None:
        if self.begun == 1:
            self.resp.headers.append((name.decode("latin-1"), value.decode("latin-1")))

    def on_headers_complete(self) -> None:
        if self.begun == 1:
            self.resp.status = self.parser.get_status_code()
            if self.head_request or 100 <= self.resp.status < 200:
                self.resp.complete = True

    def on_body(self, body: bytes) -> None:
        if self.begun == 1 and not self.resp.complete:
            self.resp.body += body

    def on_message_complete(self) -> None:
        if self.begun == 1:
            self.resp.complete = True


def _first_response_end(data: bytes, head_request: bool) -> int:
    """How many bytes of `data` the first response takes: the shortest prefix that completes it
    (httptools does not say where it stopped, and llhttp goes on into the next response)."""
    lo, hi = 1, len(data)
    while lo < hi:
        mid = (lo + hi) // 2
        p = _Parse(head_request)
        with contextlib.suppress(httptools.HttpParserUpgrade, httptools.HttpParserError):
            p.parser.feed_data(data[:mid])
        if p.resp.complete:
            hi = mid
        else:
            lo = mid + 1
    return lo


class ResponseReader:
    """Parses responses off a raw socket with httptools (one parser per response); bytes after a
    response (the next one, pipelined or written at once) stay for the next read."""

    def __init__(self, sock: socket.socket) -> None:
        self.sock = sock
        self.buffer = b""
        self.eof = False

    def read(self, head_request: bool = False) -> Response:
        p = _Parse(head_request)
        resp = p.resp
        data, self.buffer = self.buffer, b""
        fed = b""
        while True:
            if data:
                fed += data
                try:
                    p.parser.feed_data(data)
                except httptools.HttpParserUpgrade as exc:
                    self.buffer = data[exc.args[0] :]
                    return resp
                except httptools.HttpParserError:
                    if not resp.complete:
                        raise
                    # What follows is another response llhttp cannot frame as a next message
                    # (it follows a HEAD answer): cut below.
                if p.begun > 1 or (resp.complete and (head_request or 100 <= resp.status < 200)):
                    # The next response began in these bytes (or may have: llhttp takes what
                    # follows a HEAD answer or a 1xx head as this one's): this one ends where
                    # the shortest prefix completes it, and the rest waits for the next read.
                    end = _first_response_end(fed, head_request)
                    self.buffer = fed[end:]
                    again = _Parse(head_request)
                    with contextlib.suppress(httptools.HttpParserUpgrade, httptools.HttpParserError):
                        again.parser.feed_data(fed[:end])
                    return again.resp
                if resp.complete:
                    return resp
            if self.eof:
                if resp.status and not resp.complete and resp.header("content-length") is None:
                    resp.complete = True  # close-delimited
                return resp
            data = self.sock.recv(1 << 20)
            if not data:
                self.eof = True

    def read_until_close(self) -> bytes:
        chunks = [self.buffer]
        self.buffer = b""
        while True:
            data = self.sock.recv(1 << 20)
            if not data:
                return b"".join(chunks)
            chunks.append(data)


def parse_all(data: bytes) -> list[Response]:
    """Every complete response in a byte string (pipelined answers)."""
    out: list[Response] = []
    cur: list[Response] = []

    class Callbacks:
        def on_message_begin(self) -> None:
            cur.append(Response())

        def on_header(self, name: bytes, value: bytes) -> None:
            cur[-1].headers.append((name.decode("latin-1"), value.decode("latin-1")))

        def on_headers_complete(self) -> None:
            cur[-1].status = parser.get_status_code()

        def on_body(self, body: bytes) -> None:
            cur[-1].body += body

        def on_message_complete(self) -> None:
            cur[-1].complete = True
            out.append(cur.pop())

    parser = httptools.HttpResponseParser(Callbacks())
    parser.feed_data(data)
    return out


def exchange(host: str, port: int, raw: bytes, timeout: float = 10.0) -> tuple[list[Response], bool]:
    """Send raw bytes, read until the gateway closes; (responses, closed_by_gateway)."""
    with socket.create_connection((host, port), timeout=timeout) as s:
        s.sendall(raw)
        chunks = []
        closed = False
        try:
            while True:
                data = s.recv(1 << 20)
                if not data:
                    closed = True
                    break
                chunks.append(data)
        except TimeoutError:
            closed = False
        return parse_all(b"".join(chunks)), closed
