"""The gateway's own answers (errors, 100 Continue), built once as bytes.

Each error exists in two forms: with `Connection: close`, for when the client's stream can no
longer be trusted (bad framing, an unread body, a timeout), and keep-alive, for when the request
was read whole and only the upstream side failed.
"""

from __future__ import annotations

from http import HTTPStatus

CONTINUE = b"HTTP/1.1 100 Continue\r\n\r\n"

_STATUSES = (400, 404, 405, 408, 413, 414, 417, 431, 500, 501, 502, 503, 504, 507)


def _build(status: int, close: bool) -> bytes:
    reason = HTTPStatus(status).phrase
    body = f"{status} {reason}\n".encode()
    conn = b"Connection: close\r\n" if close else b""
    return (
        f"HTTP/1.1 {status} {reason}\r\n".encode()
        + b"Content-Type: text/plain\r\n"
        + f"Content-Length: {len(body)}\r\n".encode()
        + conn
        + b"\r\n"
        + body
    )


_CLOSE = {s: _build(s, True) for s in _STATUSES}
_KEEP = {s: _build(s, False) for s in _STATUSES}


def error(status: int, close: bool = True) -> bytes:
    """A complete response for one of the gateway's own error statuses."""
    table = _CLOSE if close else _KEEP
    answer = table.get(status)
    if answer is None:
        answer = _build(status, close)
    return answer


def reason(status: int) -> bytes:
    try:
        return HTTPStatus(status).phrase.encode()
    except ValueError:
        return b"Unknown"
