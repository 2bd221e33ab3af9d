"""HTTP/2 header lists to and from the gateway's HTTP/1.1 model, as pure functions.

Towards the instance (RFC 9113 §8.3.1): the pseudo-header fields become the request line and
Host (`:authority` wins over a Host field); cookie crumbs are joined into one field with "; "
(§8.2.3); connection-specific fields (§8.2.2) and the gateway's own forwarding fields are not
forwarded; the gateway adds X-Forwarded-*, Via and the body's framing (Content-Length when the
client stated it, else chunked when a body follows).

Towards the client (§8.2.2): Connection, Keep-Alive, Proxy-Connection, Transfer-Encoding and
Upgrade (and anything Connection named) are dropped; names are sent lowercase.

A malformed request (§8.1.1) is a stream error of type PROTOCOL_ERROR, never forwarded.
"""

from __future__ import annotations

from collections.abc import Iterable, Sequence
from dataclasses import dataclass
from typing import Final

from tidegate.http.headers import REQUEST_HEADERS, Req, connection_tokens

VIA_H2: Final = b"2 tidegate"

# RFC 9113 §8.2.2, and the fields HTTP/1.1 uses for its own framing.
CONNECTION_SPECIFIC: Final = frozenset(
    {b"connection", b"keep-alive", b"proxy-connection", b"transfer-encoding", b"upgrade"}
)
_BAD_VALUE_BYTES: Final = (b"\r", b"\n", b"\x00")


class Malformed(Exception):
    """The request violates RFC 9113 §8: reset the stream with PROTOCOL_ERROR."""


@dataclass(slots=True)
class H2Request:
    """What the gateway needs from an HTTP/2 request's header list."""

    method: bytes
    path: bytes
    host: bytes | None
    content_length: int | None
    expect_continue: bool
    names: list[bytes]  # forwarded fields, lowercase, in order
    values: list[bytes]
    xff: bytes | None
    via: bytes | None
    header_bytes: int  # name + value sizes, as HTTP/1.1's limit counts them


def parse_request(fields: Iterable[tuple[bytes, bytes]]) -> H2Request:
    """The request in an HTTP/2 header list (names lowercase, as HTTP/2 requires)."""
    pseudo: dict[bytes, bytes] = {}
    names: list[bytes] = []
    values: list[bytes] = []
    cookies: list[bytes] = []
    host: bytes | None = None
    content_length: int | None = None
    expect = False
    xff: bytes | None = None
    via: bytes | None = None
    size = 0
    regular = False
    for name, value in fields:
        size += len(name) + len(value) + 4
        if any(b in value for b in _BAD_VALUE_BYTES) or any(b in name for b in _BAD_VALUE_BYTES):
            raise Malformed("a field with CR, LF or NUL")
        if name[:1] == b":":
            if regular:
                raise Malformed("a pseudo-header field after a regular one")
            if name in pseudo or name not in (b":method", b":scheme", b":authority", b":path"):
                raise Malformed(f"pseudo-header field {name!r} repeated or unknown")
            pseudo[name] = value
            continue
        regular = True
        if name != name.lower():
            raise Malformed("an uppercase field name")
        if name in CONNECTION_SPECIFIC:
            raise Malformed(f"connection-specific field {name!r}")
        if name == b"te":
            if value.strip().lower() != b"trailers":
                raise Malformed("TE other than trailers")
            continue
        if name == b"cookie":
            cookies.append(value)
            continue
        kind = REQUEST_HEADERS.get(name)
        if kind is None:
            if name[:6] != b"proxy-":
                names.append(name)
                values.append(value)
            continue
        if kind == Req.HOST:
            if host is not None:
                raise Malformed("more than one Host")
            host = value.strip(b" \t")
        elif kind == Req.CONTENT_LENGTH:
            v = value.strip()
            if content_length is not None or not v.isdigit() or len(v) > 18:
                raise Malformed("a bad or repeated content-length")
            content_length = int(v)
        elif kind == Req.EXPECT:
            expect = value.strip().lower() == b"100-continue"
        elif kind == Req.X_FORWARDED_FOR:
            xff = value if xff is None else xff + b", " + value
        elif kind == Req.VIA:
            via = value if via is None else via + b", " + value
        # other kinds: hop-by-hop or the gateway's own, not forwarded
    method = pseudo.get(b":method")
    if method is None:
        raise Malformed("no :method")
    if method == b"CONNECT":
        raise Malformed("CONNECT")  # extended CONNECT is not offered (SETTINGS_ENABLE_CONNECT_PROTOCOL)
    path = pseudo.get(b":path")
    if not path or b":scheme" not in pseudo:
        raise Malformed("no :path or :scheme")
    if path[:1] != b"/" and not (path == b"*" and method == b"OPTIONS"):
        raise Malformed("a :path that is not origin-form")
    authority = pseudo.get(b":authority")
    if authority is not None:
        host = authority
    if host is not None:
        names.insert(0, b"host")
        values.insert(0, host)
    if cookies:
        names.append(b"cookie")
        values.append(b"; ".join(cookies))
    return H2Request(method, path, host, content_length, expect, names, values, xff, via, size)


def upstream_head(
    req: H2Request, peer: bytes, proto: bytes, has_body: bool
) -> tuple[list[bytes], bytes]:
    """The forwarded header lines and the HTTP/1.1 head sent to the instance."""
    lines = [n + b": " + v + b"\r\n" for n, v in zip(req.names, req.values, strict=True)]
    parts = [req.method, b" ", req.path, b" HTTP/1.1\r\n", *lines]
    xff = peer if req.xff is None else req.xff + b", " + peer
    parts.append(b"X-Forwarded-For: " + xff + b"\r\n")
    parts.append(b"X-Forwarded-Proto: " + proto + b"\r\n")
    if req.host is not None:
        parts.append(b"X-Forwarded-Host: " + req.host + b"\r\n")
    parts.append(b"Via: " + (req.via + b", " if req.via is not None else b"") + VIA_H2 + b"\r\n")
    if req.content_length is not None:
        parts.append(b"Content-Length: %d\r\n" % req.content_length)
    elif has_body:
        parts.append(b"Transfer-Encoding: chunked\r\n")
    parts.append(b"\r\n")
    return lines, b"".join(parts)


def response_fields(status: int, fields: Sequence[tuple[bytes, bytes]]) -> list[tuple[bytes, bytes]]:
    """An HTTP/1.1 response head's fields as an HTTP/2 header list (`:status` first)."""
    drop = set(CONNECTION_SPECIFIC)
    for name, value in fields:
        if name.lower() == b"connection":
            drop.update(connection_tokens(value))
    out = [(b":status", b"%d" % status)]
    for name, value in fields:
        lname = name.lower()
        if lname not in drop:
            out.append((lname, value))
    return out
