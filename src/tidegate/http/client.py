"""A client's connection to the gateway: parse requests, judge them, queue them, answer in order.

Theory of operation. httptools' request parser calls back per request part; `on_headers_complete`
judges the head (framing, Host, limits) and either queues an `Exchange` or rejects the request.
A rejection raises out of the parser, which is then dead: the connection answers the error after
the answers already owed (pipelining keeps order) and closes. Exchanges run one at a time; when
one finishes the next starts, or the connection goes idle.

Hostile input never reaches an instance: both Content-Length and Transfer-Encoding, a duplicate
or non-numeric Content-Length, a transfer coding other than chunked, a missing Host in HTTP/1.1 —
all rejected here before an exchange exists (RFC 9112 §6.1, §6.3, §3.2).

Timeouts are judged by the service's sweeper from `since` (no timer per request): a partial head
older than `client_header_timeout` gets 408, an idle keep-alive connection older than
`idle_timeout` is closed.
"""

from __future__ import annotations

import asyncio
from typing import TYPE_CHECKING, Final

from httptools import HttpParserError, HttpParserUpgrade, HttpRequestParser, parse_url

from tidegate.http import responses
from tidegate.http.attempts import BodyError, BodyStore, BodyTooLarge, SpoolError
from tidegate.http.client_side import ClientSide
from tidegate.http.exchange import Exchange
from tidegate.http.headers import REQUEST_HEADERS, VIA, Req, connection_tokens
from tidegate.http.host import valid_host
from tidegate.http.phases import TUNNEL
from tidegate.http.plain import CRLF_VIA_END, VIA_END, RequestLane
from tidegate.http.request import Request
from tidegate.http.request_id import new_id, sane

if TYPE_CHECKING:
    from tidegate.balancing.instance import Instance
    from tidegate.http.plan import ListenerPlan
    from tidegate.http.service import HttpService
    from tidegate.http.upstream import UpstreamConnection

# After answering an error on a stream whose request body was not read, keep reading (and
# discarding) this long before closing, so the client sees the answer rather than a reset.
LINGER_SECONDS: Final = 2.0
# On a graceful stop, an idle keep-alive connection is closed once it has stayed idle this long;
# a request it sends meanwhile is answered with `Connection: close`. Closing it at once races the
# client's next request on it, which the client then sees fail (RFC 9112 §9.6; wrk counts it).
STOP_IDLE_SECONDS: Final = 1.0


_PROTO_HTTP: Final = b"X-Forwarded-Proto: http\r\n"
_PROTO_HTTPS: Final = b"X-Forwarded-Proto: https\r\n"


class _Reject(Exception):
    pass


class ClientConnection(ClientSide):
    """An asyncio protocol (duck-typed: not an `asyncio.Protocol` subclass, so that mypyc
    compiles it to a native class; uvloop only calls the methods), and the client side of its
    exchanges (http/client_side.py): responses pass through as HTTP/1.1 bytes."""

    __slots__ = (
        "closed",
        "closing",
        "cur",
        "declined_body",
        "early",
        "ended",
        "fwd",
        "hbytes",
        "head_raw",
        "idle_limit",
        "lane",
        "lingering",
        "loop",
        "nfields",
        "parser",
        "parsing",
        "peer",
        "plan",
        "proto_line",
        "queue",
        "raw_http1",
        "read_paused",
        "reject",
        "req",
        "rid_field",
        "rid_name",
        "rid_open",
        "since",
        "svc",
        "tls_info",
        "transport",
        "tunnel",
        "tunnel_inst",
        "upgrading",
        "upstreams",
        "write_paused",
        "xff_self",
    )

    def __init__(self, svc: HttpService) -> None:
        self.raw_http1 = True
        self.svc = svc
        self.loop = svc.loop
        self.upstreams = svc.upstreams
        self.plan: ListenerPlan = svc.plan
        # The plan's request id field (read per request: kept here, a native field, not looked
        # up on the plan each time); set again whenever the plan changes (_use_plan).
        self.rid_name = self.plan.rid_name
        self.rid_field = self.plan.rid_field
        self.rid_open = self.plan.rid_open
        self.transport: asyncio.Transport = None  # type: ignore[assignment]
        # The long way's parser, made when a buffer first goes that way: a connection whose
        # requests all take the fast lane never needs one (0.5 KiB on every idle connection).
        self.parser: HttpRequestParser | None = None
        self.ended = False  # the byte stream ended (broken, switched, closing): input is dropped
        self.lane: RequestLane = svc.lane  # one per service: a take() is whole within one call
        # A list, not a deque: most connections never hold more than one exchange, and an empty
        # deque costs 0.7 KiB (its first block) on every idle kept-alive connection.
        self.queue: list[Exchange] = []
        self.req: Request | None = None  # the request being parsed
        self.cur: Exchange | None = None  # the exchange whose body is being read
        self.parsing = False  # between the first byte of a request and the end of its head
        self.hbytes = 0
        self.nfields = 0
        self.head_raw = 0
        self.reject = 0
        self.since = 0.0
        self.idle_limit = 0.0
        self.closing = False
        self.closed = False
        self.lingering = False
        self.read_paused = False
        self.write_paused = False
        self.tunnel: asyncio.Transport | None = None
        self.tunnel_inst: Instance | None = None
        self.early: list[bytes] | None = None
        self.upgrading = False  # the request being parsed asks for a switch the gateway passes on
        self.declined_body = 0  # body bytes of a request whose switch was declined, still to come
        self.peer = b""
        self.xff_self = b""
        self.proto_line = _PROTO_HTTP
        self.tls_info: tuple[str, str] | None = None  # (version, cipher) on a TLS connection

    # --- asyncio.Protocol -------------------------------------------------------------------
    def connection_made(self, transport: asyncio.BaseTransport) -> None:
        self.transport = transport  # type: ignore[assignment]
        peer = transport.get_extra_info("peername")
        self.peer = str(peer[0]).encode() if isinstance(peer, tuple) else b"unix"
        self.xff_self = b"X-Forwarded-For: " + self.peer + b"\r\n"
        ssl_object = transport.get_extra_info("ssl_object")
        if ssl_object is not None:
            self.proto_line = _PROTO_HTTPS
            cipher = ssl_object.cipher()
            self.tls_info = (ssl_object.version() or "", cipher[0] if cipher else "")
        self.fwd = self.xff_self + self.proto_line + b"X-Forwarded-Host: "
        conns = self.svc.conns
        conns.add(self)
        self.svc.gate.opened()
        self.since = self.loop.time()
        # A new connection must send its first request within the header timeout.
        self.idle_limit = self.plan.header_timeout
        if self.svc.stopping:
            self.closing = True

    def data_received(self, data: bytes) -> None:
        tunnel = self.tunnel
        if tunnel is not None:
            tunnel.write(data)
            self.queue_inst_bytes(len(data))
            return
        if self.declined_body:
            data = self._declined_body(data)
            if not data:
                return
        if self.ended:
            if self.early is not None:
                self.early.append(data)
            return  # discarding: the stream is broken, or lingering after an error
        if (
            not self.queue
            and not self.parsing
            and self.cur is None
            and not self.closing
            and data[-4:] == b"\r\n\r\n"
            and self._fast_request(data)
        ):
            return
        parser = self.parser
        if parser is None:
            parser = self.parser = HttpRequestParser(self)
        try:
            parser.feed_data(data)
        except HttpParserUpgrade as exc:
            if self.upgrading:
                self._upgrade_requested(data[exc.args[0] :])
            else:
                self._upgrade_declined(data[exc.args[0] :])
            return
        except HttpParserError:
            if self.parser is parser:  # else the connection was already ended meanwhile
                self._broken_stream(self.reject or 400)
            return
        if self.parsing:
            self.head_raw += len(data)
            if self.head_raw > self.plan.head_guard:
                self._broken_stream(431)

    def eof_received(self) -> bool:
        if self.tunnel is not None:
            if self.tunnel.can_write_eof():
                self.tunnel.write_eof()
            return True
        cur = self.cur
        if not self.queue or (cur is not None and not cur.req.complete):
            # Nothing owed, or a request whose body can never be finished now: that one ends
            # here (its stored body released at once, not at the upstream timeout).
            self.transport.close()
            return False
        # Half-closed by the client with answers still owed: send them, then close.
        self.closing = True
        return True

    def connection_lost(self, exc: Exception | None) -> None:
        self.closed = True
        self.svc.conns.discard(self)
        self.svc.gate.closed()
        if self.tunnel is not None:
            tunnel, self.tunnel = self.tunnel, None
            tunnel.close()
        queue, self.queue = self.queue, []
        for ex in queue:
            ex.client_gone()
        if self.cur is not None and self.cur not in queue:
            self.cur.client_gone()
        self.cur = None
        if not self.svc.conns and self.svc.stopping:
            self.svc.all_closed.set()

    def pause_writing(self) -> None:
        self.write_paused = True
        if self.tunnel is not None:
            self.tunnel.pause_reading()
            return
        if self.queue:
            self.queue[0].pause_upstream()

    def resume_writing(self) -> None:
        self.write_paused = False
        if self.tunnel is not None:
            self.tunnel.resume_reading()
            return
        if self.queue:
            self.queue[0].resume_upstream()

    # --- the fast lane ----------------------------------------------------------------------
    def _fast_request(self, data: bytes) -> bool:
        """The fast lane (http/plain.py): a plain request, taken whole; False: not taken."""
        plan = self.svc.plan
        if plan is not self.plan:
            self._use_plan(plan)
        plain = self.lane.take(data, plan.plain_head_max, plan.max_header_fields, self.rid_name)
        if plain is None:
            return False
        method, url, host, rid = plain
        target = plan.routes.match(host, url if url[:1] == b"/" else _path_of(url))
        if target is None:
            return False
        now = self.loop.time()
        self.since = now
        req = Request(now, data)
        req.method = method
        req.url = url
        req.host = host
        req.complete = True
        if target.key is not None:
            req.fill_names()
        if len(rid):
            req.rid = rid  # the client's: its line goes on where it is, the answer gets it back
            req.head = b"".join((data[:-2], self.fwd, host, b"\r\n", VIA_END))
        elif len(self.rid_open):
            rid = req.rid = new_id()
            req.head = b"".join((data[:-2], self.fwd, host, self.rid_open, rid, CRLF_VIA_END))
        else:
            req.head = b"".join((data[:-2], self.fwd, host, b"\r\n", VIA_END))
        ex = Exchange(self, req, target, True)
        self.queue.append(ex)
        ex.start()
        return True

    # --- httptools callbacks ----------------------------------------------------------------
    def on_message_begin(self) -> None:
        if self.ended:
            raise _Reject  # the connection ended while this buffer was being parsed
        now = self.loop.time()
        plan = self.svc.plan  # a reload applies from the next request on
        if plan is not self.plan:
            self._use_plan(plan)
        self.req = Request(now)
        self.parsing = True
        self.since = now
        self.hbytes = 0
        self.nfields = 0
        self.head_raw = 0

    def _use_plan(self, plan: ListenerPlan) -> None:
        self.plan = plan
        self.rid_name = plan.rid_name
        self.rid_field = plan.rid_field
        self.rid_open = plan.rid_open

    def on_url(self, url: bytes) -> None:
        req = self.req
        assert req is not None
        req.url += url
        if len(req.url) > self.plan.max_request_line:
            self.reject = 414
            raise _Reject

    def on_header(self, name: bytes, value: bytes) -> None:
        if not self.parsing:
            return  # trailers of a chunked body: not forwarded
        self.hbytes += len(name) + len(value) + 4
        self.nfields += 1
        if self.hbytes > self.plan.max_header_bytes or self.nfields > self.plan.max_header_fields:
            self.reject = 431
            raise _Reject
        req = self.req
        assert req is not None
        lname = name.lower()
        kind = REQUEST_HEADERS.get(lname)
        if kind is None:
            if lname == self.rid_name:
                if not req.rid and sane(value):
                    req.rid = value  # its line goes last (_upstream_head); an insane one is replaced
                return
            if lname[:6] != b"proxy-":
                req.names.append(lname)
                req.values.append(value)
                req.lines.append(name + b": " + value + b"\r\n")
            return
        if kind == Req.HOST:
            if req.host is not None:
                self.reject = 400  # RFC 9112 §3.2: more than one Host
                raise _Reject
            req.host = value.rstrip(b" \t")  # llhttp strips only the leading OWS
            req.names.append(lname)
            req.values.append(value)
            req.lines.append(name + b": " + value + b"\r\n")
        elif kind == Req.CONTENT_LENGTH:
            value = value.strip()
            if req.content_length is not None or not value.isdigit() or len(value) > 18:
                self.reject = 400
                raise _Reject
            req.content_length = int(value)
        elif kind == Req.TRANSFER_ENCODING:
            if req.chunked:
                self.reject = 400
                raise _Reject
            if value.strip().lower() != b"chunked":
                self.reject = 501  # a coding the gateway does not implement (RFC 9112 §6.1)
                raise _Reject
            req.chunked = True
        elif kind == Req.CONNECTION:
            # Kept: `upgrade` (a switch is asked for) and tokens naming headers to drop.
            for token in connection_tokens(value):
                if token != b"close" and token != b"keep-alive":
                    req.conn_tokens = [*(req.conn_tokens or ()), token]
        elif kind == Req.EXPECT:
            if value.strip().lower() != b"100-continue":
                self.reject = 417
                raise _Reject
            req.expect_continue = True
        elif kind == Req.UPGRADE:
            req.upgrade = value
        elif kind == Req.X_FORWARDED_FOR:
            req.xff = value if req.xff is None else req.xff + b", " + value
        elif kind == Req.VIA:
            req.via = value if req.via is None else req.via + b", " + value
        # Req.DROP: hop-by-hop or the gateway's own; not forwarded.

    def on_headers_complete(self) -> None:
        self.parsing = False
        req = self.req
        parser = self.parser
        assert req is not None and parser is not None
        plan = self.plan
        method = parser.get_method()
        req.method = method
        version = parser.get_http_version()
        if version == "1.0":
            req.version = b"1.0"
        elif version != "1.1":
            self.reject = 505 if version[:1] != "0" else 400
            raise _Reject
        if req.host is None and version == "1.1":
            self.reject = 400  # RFC 9112 §3.2
            raise _Reject
        if req.host is not None and not valid_host(req.host):
            self.reject = 400  # userinfo, whitespace, characters outside RFC 3986's host: never forwarded
            raise _Reject
        if req.chunked and (req.content_length is not None or version == "1.0"):
            self.reject = 400  # RFC 9112 §6.1: faulty framing, never forwarded
            raise _Reject
        if method == b"CONNECT":
            self.reject = 405  # a reverse proxy, not a forward proxy
            raise _Reject
        if req.content_length is not None and req.content_length > plan.max_body_bytes:
            self.reject = 413
            raise _Reject
        req.keep_alive = parser.should_keep_alive()
        req.is_head = method == b"HEAD"
        tokens = req.conn_tokens
        if req.upgrade is not None and (tokens is None or b"upgrade" not in tokens):
            req.upgrade = None  # Upgrade without Connection: upgrade is not a request to switch
        elif req.upgrade is not None and all(t == b"h2c" for t in connection_tokens(req.upgrade)):
            # h2c by upgrade is not offered (RFC 9113 §3.1 deprecates it; prior knowledge is):
            # the request is served as HTTP/1.1 and the instance never sees the Upgrade.
            req.upgrade = None
            if req.chunked:
                # llhttp hands the bytes after such a head over as another protocol's; a
                # Content-Length body is taken from them by count, a chunked one cannot be.
                self.reject = 400
                raise _Reject
            self.declined_body = req.content_length or 0
        self.upgrading = req.upgrade is not None
        url = req.url
        path = url if url[:1] == b"/" else _path_of(url)
        target = plan.routes.match(req.host, path)
        if req.chunked or req.content_length:
            req.body = BodyStore(plan.body_in_memory, plan.max_body_bytes, plan.tmpdir)
        else:
            req.complete = True
        req.head = self._upstream_head(req)
        ex = Exchange(self, req, target)
        self.cur = ex
        self.queue.append(ex)
        if len(self.queue) == 1:
            ex.start()

    def on_body(self, body: bytes) -> None:
        ex = self.cur
        if ex is None:
            return
        req = ex.req
        req.body_bytes += len(body)
        try:
            req.body.append(body)  # type: ignore[union-attr]
        except BodyTooLarge:
            self.reject = 413
            raise
        except SpoolError:
            self.reject = 507
            raise
        except BodyError:
            pass  # the exchange is already over; the rest of its body is dropped

    def on_message_complete(self) -> None:
        if self.declined_body:
            return  # llhttp skipped the body of a declined switch: it is still to come
        ex = self.cur
        self.cur = None
        self.req = None
        if ex is None:
            return
        req = ex.req
        req.complete = True
        if req.body is not None:
            req.body.finish()
        if len(self.queue) > 1 and not self.read_paused:
            # Pipelined: hold further requests in the socket until this one is answered.
            self.read_paused = True
            self.transport.pause_reading()

    # --- building the head sent upstream ----------------------------------------------------
    def _upstream_head(self, req: Request) -> bytes:
        lines = req.lines
        tokens = req.conn_tokens
        if tokens:
            drop = [t for t in tokens if t != b"upgrade"]
            if drop:
                names = req.names
                lines = [ln for n, ln in zip(names, lines, strict=True) if n not in drop]
        parts = [req.method, b" ", req.url, b" HTTP/1.1\r\n", *lines]
        xff = req.xff
        if xff is None:
            parts.append(self.xff_self)
        else:
            parts.append(b"X-Forwarded-For: " + xff + b", " + self.peer + b"\r\n")
        parts.append(self.proto_line)
        if req.host is not None:
            parts.append(b"X-Forwarded-Host: " + req.host + b"\r\n")
        parts.append(b"Via: " + (req.via + b", " if req.via is not None else b"") + VIA + b"\r\n")
        if req.content_length is not None:
            parts.append(b"Content-Length: %d\r\n" % req.content_length)
        elif req.chunked:
            parts.append(b"Transfer-Encoding: chunked\r\n")
        if req.upgrade is not None:
            parts.append(b"Connection: upgrade\r\nUpgrade: " + req.upgrade + b"\r\n")
        parts.append(self._rid_line(req))
        parts.append(b"\r\n")
        return b"".join(parts)

    def _rid_line(self, req: Request) -> bytes:
        """The request id's line for `req`, made (with the id, if it has none) on first use;
        b"" when ids are off."""
        line = req.rid_line
        if not line and self.rid_name:
            if not req.rid:
                req.rid = new_id()
            line = req.rid_line = b"".join((self.rid_field, req.rid, b"\r\n"))
        return line

    # --- errors, upgrades, the end of an exchange -------------------------------------------
    def _broken_stream(self, status: int) -> None:
        """The client's byte stream cannot be parsed any further: answer `status`, then close."""
        self.parser = None
        self.ended = True
        self.parsing = False
        self.closing = True
        cur = self.cur
        self.cur = None
        if cur is not None and not cur.req.complete:
            cur.fail_local(status)  # the body in progress is what went wrong
            return
        req = self.req or Request(self.loop.time())
        self.req = None
        ex = Exchange.error(self, req, status)
        self.queue.append(ex)
        if len(self.queue) == 1:
            ex.start()

    def _upgrade_requested(self, rest: bytes) -> None:
        self.parser = None
        self.ended = True
        self.cur = None
        self.req = None
        self.early = [rest] if rest else []
        # Bytes for the tunnel wait until the instance has answered 101.
        self.read_paused = True
        self.transport.pause_reading()

    def _upgrade_declined(self, rest: bytes) -> None:
        """llhttp stops after a request with Connection: upgrade; one whose switch the gateway
        declined was an ordinary request, and what follows it is the next one."""
        self.parser = HttpRequestParser(self)
        if rest:
            self.data_received(rest)

    def _declined_body(self, data: bytes) -> bytes:
        """The body of a request whose switch was declined, by its Content-Length; the rest."""
        n = self.declined_body
        body, rest = data[:n], data[n:]
        self.declined_body = n - len(body)
        try:
            self.on_body(body)
        except BodyError:
            self.declined_body = 0
            self._broken_stream(self.reject or 400)
            return b""
        if not self.declined_body:
            self.on_message_complete()
        return rest

    def open_tunnel(self, conn: UpstreamConnection) -> None:
        self.tunnel = conn.transport
        self.tunnel_inst = conn.inst
        early, self.early = self.early or [], None
        for chunk in early:
            conn.transport.write(chunk)
            conn.inst.counters.bytes_in += len(chunk)
        self.read_paused = False
        self.transport.resume_reading()

    def queue_inst_bytes(self, n: int) -> None:
        inst = self.tunnel_inst
        if inst is not None:
            inst.counters.bytes_in += n

    def last_answer(self, ex: Exchange) -> bool:
        """Whether `ex` answers last before a connection that is closing closes."""
        return self.closing and (not self.queue or self.queue[-1] is ex)

    def answer(self, status: int, close: bool, req: Request) -> int:
        # The gateway's own answers (400, 404, 413, 431, 502, 504…), counted for /metrics.
        answers = self.svc.answers
        answers[status] = answers.get(status, 0) + 1
        data = responses.error(status, close, self._rid_line(req))
        if not self.closed:
            self.transport.write(data)
        return len(data)

    def send_continue(self) -> None:
        if not self.closed:
            self.transport.write(responses.CONTINUE)

    def exchange_done(self, ex: Exchange, now: float = -1.0) -> None:
        queue = self.queue
        if queue and queue[0] is ex:
            del queue[0]
        if self.closed:
            return
        if ex.phase == TUNNEL:
            return
        if ex.close_client or (ex.broken and not queue):
            # Nothing more is answered on this connection: requests queued behind this one
            # (pipelined after a `Connection: close`, or a rejection after a broken stream) go.
            while queue:
                queue.pop(0).client_gone()
            self._close(linger=not ex.req.complete or self.ended)
            return
        if queue:
            queue[0].start()
            return
        if self.closing and (self.ended or not self.svc.stopping):
            self._close(linger=self.ended)
            return
        if not self.parsing:
            self.since = now if now >= 0 else self.loop.time()
            # A graceful stop came after this answer's head said keep-alive: the client may be
            # sending its next request already. That one is answered with `Connection: close`.
            self.idle_limit = STOP_IDLE_SECONDS if self.closing else self.plan.idle_timeout
        if self.read_paused and self.early is None:
            self.read_paused = False
            self.transport.resume_reading()

    def _close(self, linger: bool) -> None:
        self.parser = None
        self.ended = True
        self.closing = True
        if linger and self.transport.can_write_eof():
            self.lingering = True
            self.since = self.loop.time()
            self.transport.write_eof()
            if self.read_paused:
                self.read_paused = False
                self.transport.resume_reading()
        else:
            self.transport.close()

    # --- the service's sweeper and graceful stop --------------------------------------------
    def check(self, now: float) -> None:
        if self.tunnel is not None or self.closed:
            return
        if self.queue:
            self.queue[0].check(now, self.plan.response_timeout, self.plan.idle_timeout)
            return
        if self.lingering:
            if now - self.since >= LINGER_SECONDS:
                self.transport.close()
        elif self.parsing:
            if now - self.since >= self.plan.header_timeout:
                self._broken_stream(408)
        elif now - self.since >= self.idle_limit:
            self.transport.close()

    def shutdown(self) -> None:
        """Graceful stop: busy connections close after their current answer (`Connection:
        close`), idle ones once idle for STOP_IDLE_SECONDS or after the answer to a request
        they send meanwhile."""
        self.closing = True
        if (
            not self.queue
            and not self.parsing
            and self.tunnel is None
            and self.idle_limit == self.plan.idle_timeout
        ):
            # Idle after an answer. (A connection not yet used keeps its header timeout: its
            # first request is on its way, and a stalled loop would otherwise cut it unread.)
            self.since = self.loop.time()
            self.idle_limit = min(self.idle_limit, STOP_IDLE_SECONDS)

    def abort(self) -> None:
        self.transport.abort()


def _path_of(url: bytes) -> bytes:
    """The path of an absolute-form request target (RFC 9112 §3.2.2), for routing."""
    try:
        return parse_url(url).path or b"/"
    except HttpParserError:
        return url
