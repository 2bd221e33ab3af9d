"""The gateway's connections to instances: one response at a time, kept alive and pooled.

Theory of operation: an `UpstreamConnection` is bound to one `Exchange` while a request is on it
(`bind`), and parses that request's response with httptools. Until the response is *committed*
(its head accepted for the client) every problem is an attempt failure the exchange may retry;
after it, bytes go straight from `on_body` to the client's transport, and a problem can only cut
the client connection. When the response ends the connection goes back to the per-instance idle
list (`Upstreams.release`) if both sides framed the message and the instance keeps it alive.

Flow control both ways: the client's transport pausing pauses reading here; this transport
pausing (a slow instance reading a big upload) makes the body sender wait on `drained()`.
"""

from __future__ import annotations

import asyncio
from typing import TYPE_CHECKING, Final, cast

from httptools import HttpParserError, HttpParserUpgrade, HttpResponseParser

from tidegate.balancing.instance import Instance
from tidegate.http.attempts import Failure
from tidegate.http.headers import (
    CONNECTION_OPTIONS,
    FORWARD,
    RESPONSE_EXACT,
    RESPONSE_HEADERS,
    VIA,
    Resp,
    connection_tokens,
)
from tidegate.http.plain import ResponseLane
from tidegate.http.responses import reason as default_reason

if TYPE_CHECKING:
    from tidegate.http.client_side import ClientSide
    from tidegate.http.exchange import Exchange

# Idle keep-alive connections to an instance are closed after this long. Below the 5 s that
# uvicorn, Node and gunicorn keep idle connections, so the instance rarely closes one just as a
# request is sent on it (that race is retried anyway, as REUSED_CLOSED).
UPSTREAM_IDLE_SECONDS: Final = 4.0
MAX_IDLE_PER_INSTANCE: Final = 256

_STATUS_LINES: dict[int, bytes] = {}
_VIA_LINE: Final = b"Via: " + VIA + b"\r\n"
_NO_BODY_STATUSES: Final = frozenset({204, 304})


def _field(line: bytes) -> tuple[bytes, bytes]:
    """(name, value) of a header line as on_header stored it: `name: value` and CRLF."""
    name, _, value = line.partition(b": ")
    return name, value[:-2]


def _status_line(status: int, reason: bytes) -> bytes:
    if not reason:
        line = _STATUS_LINES.get(status)
        if line is None:
            line = _STATUS_LINES[status] = b"HTTP/1.1 %d %s\r\n" % (status, default_reason(status))
        return line
    return b"HTTP/1.1 %d %s\r\n" % (status, reason)


class UpstreamConnection:
    """An asyncio protocol (duck-typed: not an `asyncio.Protocol` subclass, so that mypyc
    compiles it to a native class; uvloop only calls the methods)."""

    __slots__ = (
        "chunk_out",
        "cl",
        "client_tr",
        "closed",
        "committed",
        "conn_tokens",
        "drain_waiter",
        "draining",
        "ex",
        "fields",
        "fresh",
        "got_bytes",
        "head_due",
        "head_out",
        "headers_done",
        "hold_head",
        "idle_since",
        "inst",
        "interim",
        "keep_alive",
        "lane",
        "lines",
        "out_bytes",
        "parser",
        "raw",
        "read_paused",
        "reads",
        "reason",
        "reused",
        "sink",
        "status",
        "te_chunked",
        "transport",
        "tunnel",
        "upgrade",
        "upstreams",
        "write_paused",
    )

    def __init__(self, upstreams: Upstreams, inst: Instance) -> None:
        self.upstreams = upstreams
        self.inst = inst
        self.transport: asyncio.Transport = None  # type: ignore[assignment]
        self.parser = HttpResponseParser(self)
        self.lane = ResponseLane()
        self.fresh = False  # bound, and no byte of the response fed to `parser` yet
        self.ex: Exchange | None = None
        self.reused = False
        self.closed = False
        self.got_bytes = False
        self.reads = 0  # reads from the instance: the sweeper's sign of life
        self.write_paused = False
        self.read_paused = False  # paused for a slow client (tracked: never pooled paused)
        self.drain_waiter: asyncio.Future[None] | None = None
        self.idle_since = 0.0
        self.tunnel: asyncio.Transport | None = None
        self.committed = False
        # Where the committed response goes: raw, HTTP/1.1 bytes to the client's transport; else
        # parsed, to the client side's response_head/data/end (http/client_side.py).
        self.raw = True
        self.client_tr: asyncio.Transport = None  # type: ignore[assignment]
        self.sink: ClientSide | None = None
        self.head_due = False  # committed, and the head not yet given to the client
        self.head_out: bytes | None = None  # that head, raw
        self.fields: list[tuple[bytes, bytes]] | None = None  # that head, parsed
        self.hold_head = False
        self.chunk_out = False
        self.out_bytes = 0
        self._reset_response()

    def _reset_response(self) -> None:
        self.status = 0
        self.reason = b""
        self.lines: list[bytes] = []
        self.cl: bytes | None = None
        self.te_chunked = False
        self.conn_tokens: list[bytes] | None = None
        self.draining = False
        self.upgrade: bytes | None = None
        self.headers_done = False
        self.interim = False
        self.keep_alive = True

    # --- binding to an exchange -------------------------------------------------------------
    def bind(self, ex: Exchange, reused: bool) -> None:
        self.ex = ex
        self.reused = reused
        self.fresh = True
        self.got_bytes = False
        self.committed = False
        self.head_due = False
        self.head_out = None
        self.out_bytes = 0

    def discard(self) -> None:
        """Forget the exchange and close: the rest of this response is of no use."""
        self.ex = None
        self.committed = False
        self.sink = None
        if not self.closed:
            self.transport.close()

    def pause_reading(self) -> None:
        if not self.read_paused:
            self.read_paused = True
            self.transport.pause_reading()

    def resume_reading(self) -> None:
        if self.read_paused:
            self.read_paused = False
            self.transport.resume_reading()

    async def drained(self) -> None:
        if not self.write_paused or self.closed:
            return
        if self.drain_waiter is None:
            self.drain_waiter = asyncio.get_running_loop().create_future()
        await self.drain_waiter

    # --- asyncio.Protocol -------------------------------------------------------------------
    def connection_made(self, transport: asyncio.BaseTransport) -> None:
        self.transport = transport  # type: ignore[assignment]

    def data_received(self, data: bytes) -> None:
        tunnel = self.tunnel
        if tunnel is not None:
            tunnel.write(data)
            self.inst.counters.bytes_out += len(data)
            return
        ex = self.ex
        if ex is None:
            # Bytes on an idle connection: the instance is out of step; never reuse it.
            self.transport.close()
            return
        self.got_bytes = True
        self.reads += 1
        if self.fresh:
            if ex.plain and self._fast_response(ex, data):
                return
            self.fresh = False
        try:
            self.parser.feed_data(data)
        except HttpParserUpgrade as exc:
            self._upgraded(data[exc.args[0] :])
            return
        except HttpParserError:
            self._protocol_error()
            return
        if self.head_due and self.ex is not None and not self.hold_head:
            self._flush_head()

    def eof_received(self) -> bool | None:
        if self.tunnel is not None:
            if self.tunnel.can_write_eof():
                self.tunnel.write_eof()
            return True
        return None

    def connection_lost(self, exc: Exception | None) -> None:
        self.closed = True
        self._wake_drain()
        if self.tunnel is not None:
            tunnel, self.tunnel = self.tunnel, None
            tunnel.close()
            return
        ex = self.ex
        if ex is None:
            self.upstreams.forget(self)
            return
        if self.committed:
            if self.headers_done and self.cl is None and not self.te_chunked:
                # A close-delimited body (RFC 9112 §6.3 rule 8) ends here, complete.
                self._complete(reusable=False)
            elif self.head_due:
                # Its head was held and nothing reached the client: a failed attempt after all.
                self.ex = None
                ex.attempt_failed(self, Failure.LOST_AFTER_SEND)
            else:
                self.ex = None
                ex.response_broken(self)
        else:
            self.ex = None
            failure = Failure.REUSED_CLOSED if self.reused and not self.got_bytes else Failure.LOST_AFTER_SEND
            ex.attempt_failed(self, failure)

    def pause_writing(self) -> None:
        self.write_paused = True
        if self.tunnel is not None:
            self.tunnel.pause_reading()  # the client sends faster than the instance reads

    def resume_writing(self) -> None:
        self.write_paused = False
        self._wake_drain()
        if self.tunnel is not None:
            self.tunnel.resume_reading()

    def _wake_drain(self) -> None:
        waiter = self.drain_waiter
        if waiter is not None:
            self.drain_waiter = None
            if not waiter.done():
                waiter.set_result(None)

    # --- the fast lane ----------------------------------------------------------------------
    def _fast_response(self, ex: Exchange, data: bytes) -> bool:
        """The fast lane (http/plain.py): a plain response, passed on whole; False: not taken."""
        target = ex.target
        if target is None or ex.client.closing:
            return False
        plain = self.lane.take(data, target.policy.statuses, ex.client.rid_open, ex.req.rid)
        if plain is None:
            return False
        status, out, keep = plain
        self.ex = None
        ex.plain_response(self, status, out, keep and not self.closed)
        return True

    # --- httptools callbacks ----------------------------------------------------------------
    def on_message_begin(self) -> None:
        self._reset_response()

    def on_status(self, status: bytes) -> None:
        self.reason += status

    def on_header(self, name: bytes, value: bytes) -> None:
        if self.headers_done:
            return  # trailers: not forwarded (the client side re-frames the body)
        kind = RESPONSE_EXACT.get(name)
        if kind is None:
            lname = name.lower()
            kind = RESPONSE_HEADERS.get(lname)
            if kind is None:
                if lname[:6] != b"proxy-":
                    self.lines.append(name + b": " + value + b"\r\n")
                return
        if kind == FORWARD:
            self.lines.append(name + b": " + value + b"\r\n")
        elif kind == Resp.CONTENT_LENGTH:
            self.cl = value.strip()
        elif kind == Resp.TRANSFER_ENCODING:
            self.te_chunked = value.strip().lower().endswith(b"chunked")
        elif kind == Resp.CONNECTION:
            if value == b"keep-alive" or value == b"close":
                return  # the common values name no header; should_keep_alive() has the rest
            tokens = connection_tokens(value)
            extra = [t for t in tokens if t not in CONNECTION_OPTIONS]
            if extra:
                self.conn_tokens = (self.conn_tokens or []) + extra
        elif kind == Resp.DRAINING:
            self.draining = value.strip() == b"1"
        elif kind == Resp.UPGRADE:
            self.upgrade = value

    def on_headers_complete(self) -> None:
        self.headers_done = True
        ex = self.ex
        if ex is None:
            return
        status = self.parser.get_status_code()
        self.status = status
        if status < 200 and status != 101:
            # 1xx interim answers (100 Continue, 103) are dropped; the final one follows.
            self.interim = True
            return
        self.keep_alive = self.parser.should_keep_alive()
        ex.response_head(self, status)
        if self.committed and ex.req.is_head:
            # httptools cannot be told a response answers HEAD and would wait for the
            # Content-Length bytes that never come: end the message here, parse the next afresh.
            self.parser = HttpResponseParser(self)
            self._complete(reusable=self.keep_alive)

    def on_body(self, body: bytes) -> None:
        if not self.committed:
            return
        if not self.raw:
            if self.head_due:
                self._flush_head()
                if self.hold_head:
                    self.hold_head = False
                    self.ex.head_shown()  # type: ignore[union-attr]
            self.out_bytes += len(body)
            self.sink.response_data(body)  # type: ignore[union-attr]
            return
        if self.chunk_out:
            body = b"%x\r\n%b\r\n" % (len(body), body)
        head = self.head_out
        if head is not None:
            self.head_out = None
            self.head_due = False
            body = head + body
            if self.hold_head:
                self.hold_head = False
                self.ex.head_shown()  # type: ignore[union-attr]
        self.out_bytes += len(body)
        self.client_tr.write(body)

    def on_message_complete(self) -> None:
        if self.interim:
            self.interim = False
            return
        if not self.committed or self.status == 101:
            return
        self._complete(reusable=self.keep_alive)

    # --- the response, towards the client ---------------------------------------------------
    def commit(
        self, sink: ClientSide, status: int, client_http10: bool, no_body: bool, close: bool, rid: bytes = b""
    ) -> bool:
        """Accept this response for the client side `sink`: build its head. Returns whether the
        client's connection closes after it. `rid`: the request's id, added to the head unless
        the instance sent that field itself (then its own stands: usually the id, echoed)."""
        lines = self.lines
        if self.conn_tokens:
            drop = {t + b":" for t in self.conn_tokens}
            lines = [ln for ln in lines if ln[: ln.index(b":") + 1].lower() not in drop]
        if rid:
            rid_name = sink.plan.rid_name
            n = len(rid_name) + 1
            if rid_name and not any(ln[:n].lower() == rid_name + b":" for ln in lines):
                lines = [*lines, b"".join((sink.plan.rid_field, rid, b"\r\n"))]
        # A short body of known length is all but sent with its head: the head waits for it, so
        # an instance that dies in between has shown the client nothing and the attempt can be
        # retried. A streamed body (chunked, or long) gets its head at once, as before.
        cl = self.cl
        self.hold_head = cl is not None and len(cl) <= 5 and status != 101
        self.committed = self.head_due = True
        if not sink.raw_http1:
            self.raw = False
            self.sink = sink
            self.chunk_out = False
            fields = [_field(ln) for ln in lines]
            fields.append((b"via", VIA))
            if cl is not None and status != 204:
                fields.append((b"content-length", cl))
            self.fields = fields
            return close
        self.raw = True
        self.client_tr = sink.transport
        parts = [_status_line(status, self.reason)]
        parts.extend(lines)
        parts.append(_VIA_LINE)
        chunk_out = False
        if status == 101:
            parts.append(b"Connection: upgrade\r\n")
            if self.upgrade is not None:
                parts.append(b"Upgrade: " + self.upgrade + b"\r\n")
            close = False
        else:
            if no_body or status in _NO_BODY_STATUSES:
                if cl is not None and status != 204:
                    parts.append(b"Content-Length: " + cl + b"\r\n")
            elif cl is not None:
                parts.append(b"Content-Length: " + cl + b"\r\n")
            elif not client_http10:
                parts.append(b"Transfer-Encoding: chunked\r\n")
                chunk_out = True
            else:
                close = True  # an HTTP/1.0 client reads this body until the connection closes
            if close:
                parts.append(b"Connection: close\r\n")
            elif client_http10:
                parts.append(b"Connection: keep-alive\r\n")
        parts.append(b"\r\n")
        self.head_out = b"".join(parts)
        self.chunk_out = chunk_out
        return close

    def _flush_head(self) -> None:
        self.head_due = False
        if not self.raw:
            fields = self.fields
            self.fields = None
            if fields is not None:
                self.sink.response_head(self.status, fields)  # type: ignore[union-attr]
            return
        head = self.head_out
        if head is not None:
            self.head_out = None
            self.out_bytes += len(head)
            self.client_tr.write(head)

    def _complete(self, reusable: bool) -> None:
        ex = self.ex
        if ex is None:
            return
        if not self.raw:
            if self.head_due:
                self._flush_head()
            self.sink.response_end()  # type: ignore[union-attr]
            self.sink = None
        else:
            tail = b"0\r\n\r\n" if self.chunk_out else b""
            head = self.head_out
            if head is not None:
                self.head_out = None
                self.head_due = False
                tail = head + tail
            if tail:
                self.out_bytes += len(tail)
                self.client_tr.write(tail)
        self.ex = None
        self.committed = False
        self.inst.counters.bytes_out += self.out_bytes
        ex.response_done(self, reusable and not self.closed, self.out_bytes)

    def _upgraded(self, rest: bytes) -> None:
        ex = self.ex
        if ex is None or not self.committed or self.status != 101 or not self.raw:
            self._protocol_error()
            return
        self._flush_head()
        if rest:
            self.out_bytes += len(rest)
            self.client_tr.write(rest)
        self.ex = None
        self.committed = False
        self.inst.counters.bytes_out += self.out_bytes
        self.tunnel = self.client_tr
        ex.tunnel_open(self, self.out_bytes)

    def _protocol_error(self) -> None:
        ex = self.ex
        if ex is None:
            self.transport.close()
            return
        committed = self.committed
        self.discard()
        if committed:
            ex.response_broken(self)
        else:
            ex.attempt_failed(self, Failure.LOST_AFTER_SEND)


class Upstreams:
    """Idle keep-alive connections per instance (LIFO, so a few stay warm), and new ones."""

    def __init__(self, loop: asyncio.AbstractEventLoop) -> None:
        self.loop = loop
        self.idle: dict[Instance, list[UpstreamConnection]] = {}
        self.stopping = False

    def acquire(self, inst: Instance) -> UpstreamConnection | None:
        conns = self.idle.get(inst)
        while conns:
            conn = conns.pop()
            if not conn.closed:
                return conn
        return None

    async def connect(self, inst: Instance, timeout: float) -> UpstreamConnection:
        async with asyncio.timeout(timeout):
            _, conn = await self.loop.create_connection(
                lambda: cast(asyncio.Protocol, UpstreamConnection(self, inst)), inst.host, inst.port
            )
        return cast(UpstreamConnection, conn)

    def release(self, conn: UpstreamConnection, now: float = -1.0) -> None:
        if conn.closed:
            return
        conns = self.idle.get(conn.inst)
        if conns is None:
            conns = self.idle[conn.inst] = []
        if self.stopping or len(conns) >= MAX_IDLE_PER_INSTANCE:
            conn.transport.close()
            return
        # The last piece of the response may have paused it for a slow client; idle, it must
        # read again (to see the instance close it, and the next response).
        conn.resume_reading()
        conn.idle_since = now if now >= 0 else self.loop.time()
        conns.append(conn)

    def forget(self, conn: UpstreamConnection) -> None:
        conns = self.idle.get(conn.inst)
        if conns and conn in conns:
            conns.remove(conn)

    def sweep(self, now: float) -> None:
        limit = now - UPSTREAM_IDLE_SECONDS
        for conns in self.idle.values():
            # Oldest first (released in time order): stop at the first fresh one.
            while conns and conns[0].idle_since < limit:
                conns.pop(0).transport.close()

    def retain(self, instances: set[Instance]) -> None:
        """Close idle connections to instances no pool holds any more (after a reload)."""
        for inst in [i for i in self.idle if i not in instances]:
            for conn in self.idle.pop(inst):
                conn.transport.close()

    def close_all(self) -> None:
        self.stopping = True
        for conns in self.idle.values():
            for conn in conns:
                conn.transport.close()
        self.idle.clear()
