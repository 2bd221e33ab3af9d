"""One client request as the gateway holds it: the parsed facts and the head to send upstream."""

from __future__ import annotations

from tidegate.http.attempts import BodyStore


class Request:
    """Filled by the client connection's parser callbacks; read-only once the head is complete.

    `names` (lowercase) and `values` hold the headers forwarded upstream, in order, so the hash
    key functions can read them; `lines` holds the same headers ready to send.
    """

    __slots__ = (
        "body",
        "body_bytes",
        "chunked",
        "complete",
        "conn_tokens",
        "content_length",
        "expect_continue",
        "head",
        "host",
        "is_head",
        "keep_alive",
        "lines",
        "method",
        "names",
        "started",
        "upgrade",
        "url",
        "values",
        "version",
        "via",
        "xff",
    )

    def __init__(self, started: float) -> None:
        self.started = started
        self.method = b""
        self.url = b""
        self.version = b"1.1"
        self.names: list[bytes] = []
        self.values: list[bytes] = []
        self.lines: list[bytes] = []
        self.host: bytes | None = None
        self.content_length: int | None = None
        self.chunked = False
        self.upgrade: bytes | None = None
        self.expect_continue = False
        self.xff: bytes | None = None
        self.via: bytes | None = None
        self.keep_alive = True
        self.is_head = False
        self.complete = False  # the whole request, body included, has been read from the client
        self.head = b""  # the request head as sent upstream
        self.body: BodyStore | None = None
        self.body_bytes = 0
        self.conn_tokens: list[bytes] | None = None  # Connection tokens naming headers to drop

    @property
    def path(self) -> bytes:
        return self.url
