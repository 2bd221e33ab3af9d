"""The fast lane's judgement: is this buffer one whole, plain head (and body), and what goes on.

Most requests and responses need nothing of the gateway's per-header work: one HTTP/1.1 head
arrives whole in one read, frames no body the gateway must re-frame, and names no header the
gateway must act on. For those, the per-header parser callbacks (a Python call per header, the
head rebuilt line by line) are most of the gateway's own CPU time. A lane takes such a buffer
whole instead:

- llhttp still judges every byte: each lane has its own parser, calling back only to the lane
  (compiled, no per-field work but a lookup by name), so what a lane takes is exactly what the
  gateway's callback parser would have accepted (bare LF, obs-fold, spaces
  before the colon, bad tokens — all refused by llhttp, and the buffer goes the long way);
- the head goes on as it came, with what the gateway adds (requests: X-Forwarded-*, Via;
  responses: Via, a `Connection: close` line dropped) — the head the callback path builds, up
  to the order of the lines it moves and a `Connection: keep-alive` it would have said anew;
- anything else (a header from `_REQUEST_NOT_PLAIN` / `_RESPONSE_NOT_PLAIN`, a duplicate Host
  or Content-Length, a body, a partial head, HTTP/1.0, HEAD, a status the retry rules or the
  drain signal look at) returns None with nothing changed, and the callback path takes the same
  bytes.

Pure: bytes in, a decision out; no sockets, no clock.
"""

from __future__ import annotations

from collections.abc import Container
from typing import Final

from httptools import HttpParserError, HttpParserUpgrade, HttpRequestParser, HttpResponseParser

from tidegate.http.headers import FORWARD, REQUEST_HEADERS, RESPONSE_EXACT, RESPONSE_HEADERS, VIA
from tidegate.http.host import valid_host
from tidegate.http.request_id import sane

VIA_END: Final = b"Via: " + VIA + b"\r\n\r\n"
CRLF_VIA_END: Final = b"\r\n" + VIA_END
_NO_BODY_STATUSES: Final = frozenset({204, 304})

# What a lane does with a field, by name. The tables hold the lowercase names that matter and,
# so that most fields cost one lookup and no lower(), the spellings clients and servers send.
_PASS: Final = 0
_HOST: Final = 1
_LENGTH: Final = 2
_CONNECTION: Final = 3
_LONG_WAY: Final = 4
_COMMON_REQUEST: Final = (
    b"User-Agent", b"Accept", b"Accept-Encoding", b"Accept-Language", b"Cookie", b"Referer",
    b"Cache-Control", b"Origin", b"Authorization", b"Content-Type", b"If-None-Match",
    b"If-Modified-Since", b"Pragma", b"Sec-Fetch-Dest", b"Sec-Fetch-Mode", b"Sec-Fetch-Site",
    b"Sec-Fetch-User", b"Upgrade-Insecure-Requests", b"X-Requested-With", b"Priority",
)  # fmt: skip


def _table(specials: dict[bytes, int], common: tuple[bytes, ...]) -> dict[bytes, int]:
    table = {name: _PASS for name in common}
    for name, kind in specials.items():
        table[name] = kind
        table[b"-".join(part.capitalize() for part in name.split(b"-"))] = kind
    return table


_REQUEST_FIELDS: Final = _table(
    {**{name: _LONG_WAY for name in REQUEST_HEADERS}, b"host": _HOST}, _COMMON_REQUEST
)
_RESPONSE_FIELDS: Final = _table(
    {
        **{name: _LONG_WAY for name in RESPONSE_HEADERS},
        b"content-length": _LENGTH,
        b"connection": _CONNECTION,
    },
    tuple(name for name, kind in RESPONSE_EXACT.items() if kind == FORWARD),
)


def _number(digits: bytes) -> int:
    """The value of 1 to 18 ASCII digits, else -1. (int() on bytes is a slow type call, and
    this also judges the digits, as isdigit() would.)"""
    if not 0 < len(digits) <= 18:
        return -1
    n = 0
    for d in digits:
        if not 48 <= d <= 57:
            return -1
        n = n * 10 + d - 48
    return n


def _firsts(*tables: dict[bytes, int]) -> bytes:
    """For each byte, 1 if a name the lanes act on may start with it (either case): a field
    starting with any other is passed on without looking at its name. (Indexed, not hashed.)"""
    firsts = {name[0] | 32 for table in tables for name, kind in table.items() if kind}
    return bytes(1 if b | 32 in firsts else 0 for b in range(256))


_REQUEST_FIRSTS: Final = _firsts(_REQUEST_FIELDS, {b"proxy-": 1, b"x-forwarded-": 1})
_RESPONSE_FIRSTS: Final = _firsts(_RESPONSE_FIELDS, {b"proxy-": 1})
_RID: Final = 2  # in a lane's own firsts: the request id's field may start with this byte


def _with_rid(firsts: bytes, rid_name: bytes) -> bytes:
    """`firsts` with _RID added for the first byte of `rid_name` (either case; none if b"")."""
    if not rid_name:
        return firsts
    first = rid_name[0] | 32
    return bytes(f | _RID if b | 32 == first else f for b, f in enumerate(firsts))


# Two functions rather than one taking the table: each reads its own Final table as a C global
# (one shared function taking it as an argument cost 3% more instructions per request).
def _request_field(name: bytes) -> int:
    kind = _REQUEST_FIELDS.get(name)
    if kind is not None:
        return kind
    lname = name.lower()
    kind = _REQUEST_FIELDS.get(lname)
    if kind is not None:
        return kind
    return _LONG_WAY if lname.startswith((b"proxy-", b"x-forwarded-")) else _PASS


def _response_field(name: bytes) -> int:
    kind = _RESPONSE_FIELDS.get(name)
    if kind is not None:
        return kind
    lname = name.lower()
    kind = _RESPONSE_FIELDS.get(lname)
    if kind is not None:
        return kind
    return _LONG_WAY if lname.startswith(b"proxy-") else _PASS


class RequestLane:
    """One client connection's judge of plain requests.

    llhttp reads the head here, calling back with the target and once per field (compiled, a
    lookup by name): the lane learns what it needs from the same pass that judges the bytes.
    """

    def __init__(self) -> None:
        self.parser = HttpRequestParser(self)
        self.messages = 0
        self.complete = False
        self.plain = True
        self.url = b""
        self.host: bytes | None = None
        self.fields = 0
        self.rid_name = b""  # the request id's field, lowercase (b"": off)
        self.rid_len = 0
        # _REQUEST_FIRSTS with the request id's first byte: one lookup still passes most fields.
        self.firsts = _REQUEST_FIRSTS
        self.rid = b""

    def _forget(self) -> None:
        # Its own method: the parser's callbacks change these during take(), and a type
        # checker (and mypyc, which trusts it) must not assume take()'s own assignments hold.
        self.messages = 0
        self.complete = False
        self.plain = True
        self.url = b""
        self.host = None
        self.fields = 0
        self.rid = b""

    # --- llhttp's callbacks -----------------------------------------------------------------
    def on_message_begin(self) -> None:
        self.messages += 1

    def on_url(self, url: bytes) -> None:
        self.url += url

    def on_header(self, name: bytes, value: bytes) -> None:
        self.fields += 1
        first = self.firsts[name[0]]
        if not first:
            return  # no field the lane acts on starts with this letter
        if first & _RID:
            if len(name) == self.rid_len and name.lower() == self.rid_name:
                if len(self.rid) or not sane(value):
                    self.plain = False  # a second id, or one to replace: the long way
                else:
                    self.rid = value
                return
            if first == _RID:
                return
        kind = _request_field(name)
        if kind == _HOST and self.host is None:
            self.host = value
        elif kind:
            self.plain = False  # a field the long way acts on, or a second Host

    def on_message_complete(self) -> None:
        self.complete = True

    # --- the judgement ----------------------------------------------------------------------
    def take(
        self, data: bytes, max_head: int, max_fields: int, rid_name: bytes
    ) -> tuple[bytes, bytes, bytes, bytes] | None:
        """(method, request target, Host value, request id) of a plain request filling `data`,
        else None.

        `max_head` is the most bytes a head may have here without counting lines against the
        limits (no longer than the request-line and the header limits both); a head with more
        than `max_fields` fields, or a Host outside its grammar, goes the long way (to its 4xx).
        `rid_name`: the request id's field, lowercase (b"": off); the id is the client's sane
        one (left in the head), b"" when it sent none. An id to replace goes the long way.
        """
        # The head ends the buffer, and only once: no blank line (a stray CRLF, which llhttp
        # would skip) just before its end.
        if len(data) > max_head or not data.endswith(b"\r\n\r\n") or data[-6:-4] == b"\r\n":
            return None
        self._forget()
        if rid_name is not self.rid_name:
            self.rid_name = rid_name
            self.rid_len = len(rid_name)
            self.firsts = _with_rid(_REQUEST_FIRSTS, rid_name)
        parser = self.parser
        try:
            parser.feed_data(data)
        except (HttpParserError, HttpParserUpgrade):
            self.parser = HttpRequestParser(self)  # llhttp stops at an error: a fresh one
            return None
        host = self.host
        if (
            self.complete
            and self.messages == 1
            and self.plain
            and host is not None
            and self.fields <= max_fields
        ):
            host = host.strip(b" \t")
            method = parser.get_method()
            url = self.url
            # HTTP/1.1, the request line from the buffer's first byte (no stray CRLF before it).
            at = len(method) + 1 + len(url)
            if data[at : at + 11] == b" HTTP/1.1\r\n" and method != b"HEAD" and valid_host(host):
                return method, url, host, self.rid
        self.parser = HttpRequestParser(self)  # it may be inside a message the long way takes
        return None


class ResponseLane:
    """One upstream connection's judge of plain responses.

    llhttp reads the head here, calling back once per field (compiled, a lookup by name):
    the lane learns what it needs from the same pass that judges the bytes.
    """

    def __init__(self) -> None:
        self.parser = HttpResponseParser(self)
        self.messages = 0
        self.complete = False
        self.plain = True
        self.keep = True
        self.length = b""
        self.connection = False
        self.rid_open = b""  # take()'s last rid_open, and what follows from it
        self.rid_name = b""
        self.rid_len = 0
        self.firsts = _RESPONSE_FIRSTS
        self.rid_seen = False  # the instance sent its own request id field

    def _forget(self) -> None:
        # Its own method, as RequestLane's: the callbacks change these during take().
        self.messages = 0
        self.complete = False
        self.plain = True
        self.keep = True
        self.length = b""
        self.connection = False
        self.rid_seen = False

    # --- llhttp's callbacks -----------------------------------------------------------------
    def on_message_begin(self) -> None:
        self.messages += 1

    def on_header(self, name: bytes, value: bytes) -> None:
        first = self.firsts[name[0]]
        if not first:
            return  # no field the lane acts on starts with this letter
        if first & _RID:
            if len(name) == self.rid_len and name.lower() == self.rid_name:
                self.rid_seen = True
                return
            if first == _RID:
                return
        kind = _response_field(name)
        if kind == _PASS:
            return
        if kind == _LENGTH and not self.length:
            self.length = value
        elif kind == _CONNECTION and not self.connection:
            self.connection = True
            if value != b"keep-alive":
                token = value.strip(b" \t").lower()
                if token == b"close":
                    self.keep = False
                elif token != b"keep-alive":
                    self.plain = False
        else:
            self.plain = False  # a field the long way acts on, or a second Content-Length/Connection

    def on_message_complete(self) -> None:
        self.complete = True

    # --- the judgement ----------------------------------------------------------------------
    def take(
        self, data: bytes, retried: Container[int], rid_open: bytes, rid: bytes
    ) -> tuple[int, bytes, bool] | None:
        """(status, what the client gets, whether the instance keeps the connection) of a plain
        response filling `data` (head and exactly its Content-Length of body), else None.

        `retried`: statuses the retry rules look at (they go the long way, as does 503, which
        may be the drain signal). `rid`: the request's id (b"": none), added as a field after
        `rid_open` (CRLF, the field's name, ": "; b"" when ids are off) unless the instance sent
        that field itself (then that one stands: usually the id, echoed).
        """
        if len(data) < 13 or not data.startswith(b"HTTP/1.1 "):
            return None
        d0, d1, d2 = data[9], data[10], data[11]
        if not (48 <= d0 <= 57 and 48 <= d1 <= 57 and 48 <= d2 <= 57):
            return None
        status = d0 * 100 + d1 * 10 + d2 - 5328  # 5328: the value of "000"
        if status < 200 or status == 503 or status in _NO_BODY_STATUSES or status in retried:
            return None
        self._forget()
        if rid_open is not self.rid_open:
            self.rid_open = rid_open
            self.rid_name = rid_open[2:-2].lower()
            self.rid_len = len(self.rid_name)
            self.firsts = _with_rid(_RESPONSE_FIRSTS, self.rid_name)
        try:
            self.parser.feed_data(data)
        except (HttpParserError, HttpParserUpgrade):
            self.parser = HttpResponseParser(self)  # llhttp stops at an error: a fresh one
            return None
        if not (self.complete and self.messages == 1 and self.plain):
            self.parser = HttpResponseParser(self)  # it may be inside a message the long way takes
            return None
        head, _, body = data.partition(b"\r\n\r\n")
        if _number(self.length.rstrip(b" \t")) != len(body):
            # No Content-Length, or bytes after the message (llhttp skips a stray CRLF there).
            self.parser = HttpResponseParser(self)
            return None
        if self.rid_seen:
            rid = b""
        if self.keep:
            # A `Connection: keep-alive` line may stay: hop-by-hop, but as true of the client's
            # hop (the lane answers only kept-alive HTTP/1.1 requests), as nginx says it itself.
            if len(rid):
                return status, b"".join((head, rid_open, rid, CRLF_VIA_END, body)), True
            return status, b"".join((head, CRLF_VIA_END, body)), True
        self.parser = HttpResponseParser(self)  # llhttp takes nothing after a close
        # `Connection: close` is the instance's hop only: the client gets the head without it.
        lines = [ln for ln in head.split(b"\r\n") if ln.partition(b":")[0].lower() != b"connection"]
        if len(rid):
            lines.append(b"".join((rid_open[2:], rid, CRLF_VIA_END)))
        else:
            lines.append(VIA_END)
        return status, b"".join((b"\r\n".join(lines), body)), False
