"""Raw-socket HTTP for tests: send exact bytes, parse what comes back with httptools."""

from __future__ import annotations

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


class ResponseReader:
    """Parses responses off a raw socket with httptools (one parser per response)."""

    def __init__(self, sock: socket.socket) -> None:
        self.sock = sock
        self.buffer = b""
        self.eof = False

    def read(self, head_request: bool = False) -> Response:
        resp = Response()
        reader = self

        class Callbacks:
            def on_header(self, name: bytes, value: bytes) -> None:
                resp.headers.append((name.decode("latin-1"), value.decode("latin-1")))

            def on_headers_complete(self) -> None:
                resp.status = parser.get_status_code()
                if head_request or 100 <= resp.status < 200:
                    resp.complete = True

            def on_body(self, body: bytes) -> None:
                resp.body += body

            def on_message_complete(self) -> None:
                resp.complete = True

        parser = httptools.HttpResponseParser(Callbacks())
        data, self.buffer = self.buffer, b""
        while True:
            if data:
                try:
                    parser.feed_data(data)
                except httptools.HttpParserUpgrade as exc:
                    reader.buffer = data[exc.args[0] :]
                    return resp
                if resp.complete:
                    # What follows the message belongs to the next response. httptools does not
                    # say where it stopped, so responses are read with a fresh feed each time:
                    # tests only pipeline fixed-length responses through `read_many`.
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
