"""What an exchange needs from whoever owns the client's end of a request: one small interface.

An `Exchange` (http/exchange.py) is one request's life; the object that read the request from
the client — HTTP/1.1's `ClientConnection` (http/client.py), or one HTTP/2 stream — owns the
client's end and drives the exchange. They talk only through `ClientSide` below (the exchange
calls it) and the exchange's own methods (the client side calls them):

    client side -> exchange:  Exchange(side, req, target, plain), start(), fail_local(status),
                              client_gone(), check(now, response_timeout, client_timeout),
                              pause_upstream(), resume_upstream()
    exchange -> client side:  the attributes and methods of `ClientSide`

The request. The client side builds the `Request` (http/request.py) with its `head`: the bytes
sent upstream as they are (HTTP/1.1 to the instance, X-Forwarded-For/-Proto/-Host and Via
already in it — the client side knows the peer and the scheme, http or https). A body goes into
`req.body` (a `BodyStore`: append, then finish) while the exchange already runs; `plain` is True
only for a request HTTP/1.1's fast lane took whole (pass False from any other side).

The response, two ways. `raw_http1` chooses:
- True (HTTP/1.1): the response is passed through as HTTP/1.1 bytes written straight to
  `transport` — the zero-copy fast lane (http/plain.py) and the re-framing callback path.
- False (HTTP/2, one stream): the upstream connection parses the response and calls
  `response_head(status, fields)` once, `response_data(piece)` per de-chunked body piece, and
  `response_end()` when the body is whole. `fields` are (name, value) pairs, names as the
  instance sent them (lowercase them for HTTP/2), connection-specific fields already removed
  (Connection and the fields it names, Keep-Alive, Transfer-Encoding, Upgrade, Proxy-*),
  `via` added, `content-length` present when the instance framed the body by length. Trailers
  are not passed on (nor are they to HTTP/1.1 clients). A response to HEAD, 204 or 304 gets
  head and end, no data.
The gateway's own answers (502, 504, 408...) come through `answer(status, close, req)` either way.

After the exchange. `exchange_done(ex, now)` is called once when the exchange is over (not for
one the client side ended with `client_gone`); `ex.close_client` says the connection should
close after it, `ex.broken` that the answer was cut or never whole (HTTP/2: reset the stream),
`ex.phase == TUNNEL` that the instance switched protocols (HTTP/1.1 only, via `open_tunnel`).

Flow control. The exchange reads `write_paused` when a response starts (paused: the upstream
connection does not read); after that the client side says `ex.pause_upstream()` and
`ex.resume_upstream()` when its own buffer fills and drains (HTTP/2: a stream's window too).

Why a base class and not a `typing.Protocol`: the exchange calls these per request on the hot
path, and mypyc compiles calls and attribute reads on a native class to direct C (a vtable
slot, a struct field) but on a Protocol to generic Python attribute lookups. Interpreted
subclasses are allowed (tests make them; measured: no cost to the compiled HTTP/1.1 path), but
list a subclass's module in scripts/build_native.py so that its own code is compiled too.
"""

from __future__ import annotations

import asyncio
from typing import TYPE_CHECKING

from mypy_extensions import mypyc_attr

if TYPE_CHECKING:
    from tidegate.http.exchange import Exchange
    from tidegate.http.plan import ListenerPlan
    from tidegate.http.request import Request
    from tidegate.http.service import HttpService
    from tidegate.http.upstream import UpstreamConnection, Upstreams


@mypyc_attr(allow_interpreted_subclasses=True)
class ClientSide:
    """The client's end of requests, as an exchange sees it. Subclasses set every attribute."""

    __slots__ = ()

    raw_http1: bool  # True: responses pass through as HTTP/1.1 bytes on `transport`
    transport: asyncio.Transport  # the raw lane's way to the client (raw_http1 only)
    loop: asyncio.AbstractEventLoop
    svc: HttpService
    upstreams: Upstreams
    plan: ListenerPlan  # the listener's plan the request was read under
    rid_open: bytes  # that plan's CRLF + request id field + ": " (b"": ids off); read per response
    peer: bytes  # the client's address, for hash keys and the access log
    tls_info: tuple[str, str] | None  # (TLS version, cipher) for the access log; None: cleartext
    closed: bool  # the client's connection is gone
    closing: bool  # the connection ends after the answers owed (graceful stop, half-close...)
    write_paused: bool  # the client reads slower than answers come

    def answer(self, status: int, close: bool, req: Request) -> int:
        """Send the gateway's own answer `status` to `req`; close: the connection ends after it.
        It carries the request's id (made now if the request has none yet: a request refused
        before its head was read whole). Returns the bytes it took (for the access log)."""
        raise NotImplementedError

    def send_continue(self) -> None:
        """Tell the client to send the body it holds back (Expect: 100-continue)."""
        raise NotImplementedError

    def last_answer(self, ex: Exchange) -> bool:
        """Whether `ex` answers last before a connection that is closing closes."""
        raise NotImplementedError

    def exchange_done(self, ex: Exchange, now: float = -1.0) -> None:
        """`ex` is over (its answer is out, or cut): the next may start. `now`: the loop's time
        when the caller already read it, else -1."""
        raise NotImplementedError

    def open_tunnel(self, conn: UpstreamConnection) -> None:
        """The instance switched protocols (101): bytes flow raw both ways from now on."""
        raise NotImplementedError

    # --- the parsed response (raw_http1 False) ----------------------------------------------
    def response_head(self, status: int, fields: list[tuple[bytes, bytes]]) -> None:
        raise NotImplementedError

    def response_data(self, data: bytes) -> None:
        raise NotImplementedError

    def response_end(self) -> None:
        raise NotImplementedError
