"""The fast lane's judgement: is this buffer one whole, plain head (and body), and what goes on.

Most requests and responses need nothing of the gateway's per-header work: one HTTP/1.1 head
arrives whole in one read, frames no body the gateway must re-frame, and names no header the
gateway must act on. For those, the per-header parser callbacks (a Python call per header, the
head rebuilt line by line) are most of the gateway's own CPU time. A lane takes such a buffer
whole instead:

- llhttp still judges every byte: each lane has its own parser with no callbacks, so what a lane
  takes is exactly what the callback parser would have accepted (bare LF, obs-fold, spaces
  before the colon, bad tokens — all refused by llhttp, and the buffer goes the long way);
- the head goes on as it came, with what the gateway adds (requests: X-Forwarded-*, Via;
  responses: Via, the hop-by-hop Connection line dropped) — the same head the callback path
  builds, up to the order of the lines it moves;
- anything else (a header from `_REQUEST_NOT_PLAIN` / `_RESPONSE_NOT_PLAIN`, a duplicate Host
  or Content-Length, a body, a partial head, HTTP/1.0, HEAD, a status the retry rules or the
  drain signal look at) returns None with nothing changed, and the callback path takes the same
  bytes.

Pure: bytes in, a decision out; no sockets, no clock.
"""

from __future__ import annotations

import re
from collections.abc import Container

from httptools import HttpParserError, HttpParserUpgrade, HttpRequestParser, HttpResponseParser

from tidegate.http.headers import VIA

# Lowercased names at a line start. Requests: what frames a body, is hop-by-hop, or is
# rewritten by the gateway. Responses: the same, less Content-Length and Connection (handled
# here), plus the drain header.
_REQUEST_NOT_PLAIN = re.compile(
    rb"\n(?:content-length|transfer-encoding|connection|expect|upgrade|via|keep-alive|te|trailer):"
    rb"|\n(?:x-forwarded-|proxy-)"
)
_RESPONSE_NOT_PLAIN = re.compile(
    rb"\n(?:transfer-encoding|keep-alive|te|trailer|upgrade|tidegate-draining):|\nproxy-"
)
VIA_END = b"Via: " + VIA + b"\r\n\r\n"
_NO_BODY_STATUSES = frozenset({204, 304})


class _Judge:
    """The protocol of a lane's parser: no callbacks, llhttp only judges the bytes."""


_JUDGE = _Judge()


class RequestLane:
    """One client connection's judge of plain requests."""

    def __init__(self) -> None:
        self.parser = HttpRequestParser(_JUDGE)

    def take(self, data: bytes, max_head: int) -> tuple[bytes, bytes, bytes] | None:
        """(method, request target, Host value) of a plain request filling `data`, else None.

        `max_head` is the most bytes a head may have here without counting lines against the
        limits (no longer than the request-line and the header limits both).
        """
        n = len(data)
        if n > max_head or data.find(b"\r\n\r\n") != n - 4:
            return None
        low = data.lower()
        if _REQUEST_NOT_PLAIN.search(low) is not None:
            return None
        h = low.find(b"\nhost:")
        if h < 0 or low.find(b"\nhost:", h + 6) >= 0:
            return None
        eol = data.find(b"\r\n")
        if data[eol - 9 : eol] != b" HTTP/1.1" or data[:5] == b"HEAD ":
            return None
        try:
            self.parser.feed_data(data)
        except (HttpParserError, HttpParserUpgrade):
            self.parser = HttpRequestParser(_JUDGE)  # llhttp stops at an error: a fresh one
            return None
        sp = data.find(b" ")
        return data[:sp], data[sp + 1 : eol - 9], data[h + 6 : data.find(b"\r\n", h)].strip(b" \t")


class ResponseLane:
    """One upstream connection's judge of plain responses."""

    def __init__(self) -> None:
        self.parser = HttpResponseParser(_JUDGE)

    def take(self, data: bytes, retried: Container[int]) -> tuple[int, bytes, bool] | None:
        """(status, what the client gets, whether the instance keeps the connection) of a plain
        response filling `data` (head and exactly its Content-Length of body), else None.

        `retried`: statuses the retry rules look at (they go the long way, as does 503, which
        may be the drain signal).
        """
        if data[:9] != b"HTTP/1.1 ":
            return None
        status_text = data[9:12]
        if not status_text.isdigit() or data[12:13] not in (b" ", b"\r"):
            return None
        status = int(status_text)
        if status < 200 or status == 503 or status in _NO_BODY_STATUSES or status in retried:
            return None
        end = data.find(b"\r\n\r\n")
        if end < 0:
            return None
        head = data[: end + 2]
        low = head.lower()
        if _RESPONSE_NOT_PLAIN.search(low) is not None:
            return None
        c = low.find(b"\ncontent-length:")
        if c < 0 or low.find(b"\ncontent-length:", c + 16) >= 0:
            return None
        length = low[c + 16 : low.find(b"\r\n", c)].strip(b" \t")
        if not length.isdigit() or len(length) > 18 or int(length) != len(data) - end - 4:
            return None
        keep = True
        k = low.find(b"\nconnection:")
        if k >= 0:
            if low.find(b"\nconnection:", k + 12) >= 0:
                return None
            line_end = low.find(b"\r\n", k)
            value = low[k + 12 : line_end].strip(b" \t")
            if value == b"close":
                keep = False
            elif value != b"keep-alive":
                return None
            head = head[: k + 1] + head[line_end + 2 :]
        try:
            self.parser.feed_data(data)
        except (HttpParserError, HttpParserUpgrade):
            self.parser = HttpResponseParser(_JUDGE)
            return None
        if not keep:
            self.parser = HttpResponseParser(_JUDGE)  # llhttp takes nothing after a close
        return status, head + VIA_END + data[end + 4 :], keep
