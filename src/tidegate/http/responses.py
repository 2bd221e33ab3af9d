"""The gateway's own answers (errors, 100 Continue), built once as bytes.

Each error exists in two forms: with `Connection: close`, for when the client's stream can no
longer be trusted (bad framing, an unread body, a timeout), and keep-alive, for when the request
was read whole and only the upstream side failed. Every one carries `Date` (RFC 9110 §6.6.1: a
server with a clock sends it), formatted once a second.
"""

from __future__ import annotations

import time
from email.utils import formatdate
from http import HTTPStatus

CONTINUE = b"HTTP/1.1 100 Continue\r\n\r\n"

_STATUSES = (400, 404, 405, 408, 413, 414, 417, 431, 500, 501, 502, 503, 504, 507)


def _build(status: int, close: bool) -> tuple[bytes, bytes]:
    """The answer in two parts, the Date line to go between them."""
    reason = HTTPStatus(status).phrase
    body = f"{status} {reason}\n".encode()
    conn = b"Connection: close\r\n" if close else b""
    return (
        f"HTTP/1.1 {status} {reason}\r\n".encode(),
        b"Content-Type: text/plain\r\n" + f"Content-Length: {len(body)}\r\n".encode() + conn + b"\r\n" + body,
    )


_CLOSE = {s: _build(s, True) for s in _STATUSES}
_KEEP = {s: _build(s, False) for s in _STATUSES}


class _Clock:
    second = -1
    line = b""


def date_line() -> bytes:
    """`Date: <IMF-fixdate>\r\n` for now, made at most once a second."""
    now = int(time.time())
    if now != _Clock.second:
        _Clock.line = b"Date: " + formatdate(now, usegmt=True).encode() + b"\r\n"
        _Clock.second = now
    return _Clock.line


def error(status: int, close: bool = True, extra: bytes = b"") -> bytes:
    """A complete response for one of the gateway's own error statuses; `extra`: header lines
    to add (the request id's)."""
    table = _CLOSE if close else _KEEP
    parts = table.get(status)
    if parts is None:
        parts = _build(status, close)
    return b"".join((parts[0], date_line(), extra, parts[1]))


def reason(status: int) -> bytes:
    try:
        return HTTPStatus(status).phrase.encode()
    except ValueError:
        return b"Unknown"
