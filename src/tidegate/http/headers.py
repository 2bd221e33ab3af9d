"""Header names the gateway treats specially, as frozen sets and tables of lowercase bytes.

Looked up once per header on the hot path (`name.lower()` then one dict lookup), so there is no
regex and no per-request set building. Hop-by-hop headers (RFC 9110 §7.6.1) are never forwarded;
the gateway frames each hop itself (Content-Length or chunked) and speaks its own Connection.
"""

from __future__ import annotations

from enum import IntEnum


class Req(IntEnum):
    """What the client-side parser does with a request header (absent = forward as is)."""

    HOST = 1
    CONTENT_LENGTH = 2
    TRANSFER_ENCODING = 3
    CONNECTION = 4
    EXPECT = 5
    UPGRADE = 6
    X_FORWARDED_FOR = 7
    VIA = 8
    DROP = 9  # hop-by-hop, or rewritten by the gateway


REQUEST_HEADERS: dict[bytes, Req] = {
    b"host": Req.HOST,
    b"content-length": Req.CONTENT_LENGTH,
    b"transfer-encoding": Req.TRANSFER_ENCODING,
    b"connection": Req.CONNECTION,
    b"expect": Req.EXPECT,
    b"upgrade": Req.UPGRADE,
    b"x-forwarded-for": Req.X_FORWARDED_FOR,
    b"via": Req.VIA,
    b"keep-alive": Req.DROP,
    b"te": Req.DROP,
    b"trailer": Req.DROP,
    b"proxy-connection": Req.DROP,
    b"proxy-authorization": Req.DROP,
    b"proxy-authenticate": Req.DROP,
    b"http2-settings": Req.DROP,  # only meaningful with Upgrade: h2c, which is not passed on
    # The gateway states these itself, from what it saw; a client's values are not trusted.
    b"x-forwarded-proto": Req.DROP,
    b"x-forwarded-host": Req.DROP,
}


class Resp(IntEnum):
    """What the upstream-side parser does with a response header (absent = forward as is)."""

    CONTENT_LENGTH = 1
    TRANSFER_ENCODING = 2
    CONNECTION = 3
    DRAINING = 4
    UPGRADE = 5
    DROP = 6


RESPONSE_HEADERS: dict[bytes, Resp] = {
    b"content-length": Resp.CONTENT_LENGTH,
    b"transfer-encoding": Resp.TRANSFER_ENCODING,
    b"connection": Resp.CONNECTION,
    b"tidegate-draining": Resp.DRAINING,
    b"upgrade": Resp.UPGRADE,
    b"keep-alive": Resp.DROP,
    b"te": Resp.DROP,
    b"trailer": Resp.DROP,
    b"proxy-connection": Resp.DROP,
    b"proxy-authenticate": Resp.DROP,
    b"proxy-authorization": Resp.DROP,
}

# Exact spellings servers commonly send, so the common header costs one lookup and no lower():
# a name found here needs nothing else; one that is not is looked up lowercased in the tables
# above (FORWARD: a response header passed on as is).
FORWARD = 0
RESPONSE_EXACT: dict[bytes, int] = {
    **{
        name: FORWARD
        for name in (
            b"Server",
            b"Date",
            b"Content-Type",
            b"Cache-Control",
            b"Last-Modified",
            b"ETag",
            b"Expires",
            b"Vary",
            b"Set-Cookie",
            b"Accept-Ranges",
            b"Content-Encoding",
            b"Location",
            b"Content-Language",
            b"Content-Disposition",
            b"Age",
            b"Access-Control-Allow-Origin",
            b"X-Content-Type-Options",
            b"Strict-Transport-Security",
            b"X-Frame-Options",
            b"server",
            b"date",
            b"content-type",
            b"cache-control",
            b"last-modified",
            b"etag",
            b"vary",
            b"set-cookie",
            b"x-backend",
        )
    },
    b"Content-Length": Resp.CONTENT_LENGTH,
    b"content-length": Resp.CONTENT_LENGTH,
    b"Transfer-Encoding": Resp.TRANSFER_ENCODING,
    b"transfer-encoding": Resp.TRANSFER_ENCODING,
    b"Connection": Resp.CONNECTION,
    b"connection": Resp.CONNECTION,
}

# Connection tokens that name no header (RFC 9110 §7.6.1); any other token names a header to drop.
CONNECTION_OPTIONS = frozenset({b"close", b"keep-alive", b"upgrade"})

# RFC 9110 §9.2.2.
IDEMPOTENT_METHODS = frozenset({b"GET", b"HEAD", b"OPTIONS", b"TRACE", b"PUT", b"DELETE"})

VIA = b"1.1 tidegate"


def connection_tokens(value: bytes) -> list[bytes]:
    """The comma-separated, case-insensitive tokens of a Connection header value."""
    return [t.strip().lower() for t in value.split(b",") if t.strip()]
