"""One client request as the gateway holds it: the parsed facts and the head to send upstream."""

from __future__ import annotations

from typing import Final

from tidegate.http.attempts import BodyStore

# The header lists of every request the fast lane took, until `fill_names` makes its own.
_UNFILLED: Final[list[bytes]] = []


class Request:
    """Filled by the client connection's parser callbacks; read-only once the head is complete.

    `names` (lowercase) and `values` hold the headers forwarded upstream, in order, so the hash
    key functions can read them; `lines` holds the same headers ready to send.

    Defaults are class attributes, so making one (once per request, on the hot path) sets only
    what differs; there are no `__slots__` for that reason.
    """

    method = b""
    url = b""
    version = b"1.1"
    host: bytes | None = None
    content_length: int | None = None
    chunked = False
    upgrade: bytes | None = None
    expect_continue = False
    xff: bytes | None = None
    via: bytes | None = None
    keep_alive = True
    is_head = False
    complete = False  # the whole request, body included, has been read from the client
    head = b""  # the request head as sent upstream
    body: BodyStore | None = None
    body_bytes = 0
    conn_tokens: list[bytes] | None = None  # Connection tokens naming headers to drop
    raw: bytes | None = None  # the client's head, when the fast lane took the request
    rid = b""  # the request id (http/request_id.py); b"" while none, or when they are off
    rid_line = b""  # its line as the gateway writes it, made when needed (not on the fast lane)

    def __init__(self, started: float, raw: bytes | None = None) -> None:
        self.started = started
        if raw is None:
            self.names: list[bytes] = []
            self.values: list[bytes] = []
            self.lines: list[bytes] = []
        else:
            # Taken by the fast lane: the lists stay unmade (and shared, empty) until read.
            self.raw = raw
            self.names = self.values = self.lines = _UNFILLED

    def fill_names(self) -> None:
        """`names`/`values`/`lines` from the raw head, for a request the fast lane took.

        The fast lane forwards the head without splitting it; the few readers of the header
        list (hash keys, the retry rule for an Idempotency-Key) call this first. The head was
        validated by llhttp, so every line is `name: value` and ends in CRLF.
        """
        raw = self.raw
        if raw is None:
            return
        self.raw = None
        self.names, self.values, self.lines = [], [], []
        for line in raw.split(b"\r\n")[1:]:
            if line:
                name, _, value = line.partition(b":")
                self.names.append(name.lower())
                self.values.append(value.strip(b" \t"))
                self.lines.append(line + b"\r\n")

    @property
    def path(self) -> bytes:
        return self.url
