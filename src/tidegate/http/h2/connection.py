"""A client's HTTP/2 connection to the gateway: h2's state machine between the socket and one
exchange per stream.

Theory of operation. Bytes from the client go to `h2.connection.H2Connection`, which returns
events; a request's HEADERS make a `Request` (http/h2/fields.py) and start an `Exchange` on an
`H2Stream` — the same routing, schedulers, retry table and body store as HTTP/1.1. What h2 wants
to send (SETTINGS, ACKs, the answers' frames) is written out after each batch (`flush`).

Defences, each bounded per connection and ending only that connection (GOAWAY, then close):
- protocol errors h2 detects (stream-id abuse, bad frames, windows over 2^31-1, a header list
  over SETTINGS_MAX_HEADER_LIST_SIZE after HPACK decoding — HPACK bombs): h2's own GOAWAY;
- frames over SETTINGS_MAX_FRAME_SIZE and header blocks over the header limit (CONTINUATION
  floods): refused as they arrive (http/h2/frames.py);
- at most `MAX_STREAMS` streams at once (SETTINGS_MAX_CONCURRENT_STREAMS, enforced by h2);
- rapid reset, SETTINGS/PING/PRIORITY floods, empty DATA floods: budgets (http/h2/guard.py);
- a client that stops reading (zero windows, or a full socket) while answers wait: closed after
  `idle_timeout` without progress, like nginx's send_timeout; the instances' reads stay paused
  meanwhile (http/h2/stream.py), so memory stays bounded.

Graceful stop and reload: GOAWAY (NO_ERROR) naming the last stream taken; open streams finish,
newer ones are refused (REFUSED_STREAM, safe for the client to retry), then the connection closes.
"""

from __future__ import annotations

import asyncio
import logging
from typing import TYPE_CHECKING, Final

from h2.config import H2Configuration
from h2.connection import H2Connection
from h2.errors import ErrorCodes
from h2.events import (
    ConnectionTerminated,
    DataReceived,
    Event,
    PingReceived,
    PriorityUpdated,
    RemoteSettingsChanged,
    RequestReceived,
    StreamEnded,
    StreamReset,
    TrailersReceived,
    UnknownFrameReceived,
    WindowUpdated,
)
from h2.exceptions import ProtocolError
from h2.settings import SettingCodes
from hyperframe.frame import GoAwayFrame

from tidegate.http import request_id
from tidegate.http.attempts import BodyStore
from tidegate.http.exchange import Exchange
from tidegate.http.h2.fields import Malformed, parse_request, upstream_head
from tidegate.http.h2.frames import BoundedFrameBuffer
from tidegate.http.h2.guard import Abuse, Guard
from tidegate.http.h2.stream import H2Stream
from tidegate.http.request import Request

if TYPE_CHECKING:
    from tidegate.http.service import HttpService

log = logging.getLogger("tidegate.http")

MAX_STREAMS: Final = 100
# Uploads: a window large enough that a client on a fast path is not held back by round trips.
# Received bytes are acknowledged as soon as the body store has them (memory, then a temporary
# file), so this bounds nothing the store does not bound already.
STREAM_WINDOW: Final = 1024 * 1024
CONNECTION_WINDOW: Final = 16 * 1024 * 1024
# HPACK's accounting adds 32 bytes per field (RFC 7541 §4.1); the header block (compressed)
# may not be larger than the decoded list's limit.
_HEADER_BLOCK_SLACK: Final = 4096


class H2ClientConnection:
    """An asyncio protocol (duck-typed, like http/client.py's ClientConnection)."""

    def __init__(self, svc: HttpService, https: bool = False) -> None:
        self.svc = svc
        self.loop = svc.loop
        self.upstreams = svc.upstreams
        self.plan = svc.plan
        self.proto = b"https" if https else b"http"
        self.transport: asyncio.Transport = None  # type: ignore[assignment]
        self.h2: H2Connection = None  # type: ignore[assignment]
        self.streams: dict[int, H2Stream] = {}
        self.guard = Guard()
        self.peer = b""
        self.tls_info: tuple[str, str] | None = None
        self.closed = False
        self.goaway = False  # a GOAWAY went out: no new streams
        self.last_stream = 0
        self.write_paused = False
        self.since = 0.0
        self.idle_limit = 0.0
        self.sent = 0  # bumped whenever DATA goes out: a stalled client shows none
        self.flush_due = False
        self.watch = -1
        self.stall_since = 0.0
        self.tunnel = None  # the service counts busy connections by `queue` and `tunnel`

    @property
    def queue(self) -> dict[int, H2Stream]:
        return self.streams

    # --- asyncio.Protocol -------------------------------------------------------------------
    def connection_made(self, transport: asyncio.BaseTransport) -> None:
        self.transport = transport  # type: ignore[assignment]
        peer = transport.get_extra_info("peername")
        self.peer = str(peer[0]).encode() if isinstance(peer, tuple) else b"unix"
        ssl_object = transport.get_extra_info("ssl_object")
        if ssl_object is not None:
            cipher = ssl_object.cipher()
            self.tls_info = (ssl_object.version() or "", cipher[0] if cipher else "")
        self.svc.opened(self)
        self.since = self.loop.time()
        self.idle_limit = self.plan.header_timeout
        limit = self.plan.max_header_bytes
        h2c = H2Connection(H2Configuration(client_side=False, header_encoding=None))
        h2c.incoming_buffer = BoundedFrameBuffer(limit + _HEADER_BLOCK_SLACK)
        # Until the client acknowledges our SETTINGS it may assume more; the decoder's bound
        # holds from the first byte (an HPACK bomb needs no acknowledgement).
        h2c.decoder.max_header_list_size = limit
        h2c.initiate_connection()
        h2c.update_settings(
            {
                SettingCodes.MAX_CONCURRENT_STREAMS: MAX_STREAMS,
                SettingCodes.MAX_HEADER_LIST_SIZE: limit,
                SettingCodes.INITIAL_WINDOW_SIZE: STREAM_WINDOW,
            }
        )
        h2c.increment_flow_control_window(CONNECTION_WINDOW - 65535)
        self.h2 = h2c
        self.flush()
        if self.svc.stopping:
            self.shutdown()

    def data_received(self, data: bytes) -> None:
        if self.closed:
            return
        try:
            events = self.h2.receive_data(data)
        except ProtocolError as exc:
            # h2 has queued its GOAWAY with the error's code.
            log.info("%s: HTTP/2 client %s: %s", self.svc.name, self.peer.decode(), exc)
            self._end_all()
            return
        now = self.loop.time()
        for ev in events:
            if self.closed:
                return
            self._event(ev, now)
        self.flush()

    def _event(self, ev: Event, now: float) -> None:
        if isinstance(ev, DataReceived):
            sid = ev.stream_id
            n = ev.flow_controlled_length
            if n:
                self.h2.acknowledge_received_data(n, sid)
            if not ev.data and not ev.stream_ended and not self.guard.spend(Abuse.EMPTY, now):
                self.calm(Abuse.EMPTY)
                return
            stream = self.streams.get(sid)
            if stream is not None:
                stream.body_data(ev.data)
        elif isinstance(ev, RequestReceived):
            self._request(ev, now)
        elif isinstance(ev, StreamEnded):
            stream = self.streams.get(ev.stream_id)
            if stream is not None:
                stream.body_end()
        elif isinstance(ev, WindowUpdated):
            self._window(ev.stream_id)
        elif isinstance(ev, StreamReset):
            stream = self.streams.pop(ev.stream_id, None)
            if stream is not None:
                if not stream.end_sent and not self.guard.spend(Abuse.RESETS, now):
                    stream.client_gone()
                    self.calm(Abuse.RESETS)
                    return
                stream.closed = True  # h2 has closed it: nothing to reset back
                stream.client_gone()
        elif isinstance(ev, (RemoteSettingsChanged, PingReceived, PriorityUpdated, UnknownFrameReceived)):
            if not self.guard.spend(Abuse.CONTROL, now):
                self.calm(Abuse.CONTROL)
                return
            if isinstance(ev, RemoteSettingsChanged) and SettingCodes.INITIAL_WINDOW_SIZE in ev.changed_settings:
                self._window(0)
        elif isinstance(ev, TrailersReceived):
            stream = self.streams.get(ev.stream_id)
            if stream is not None:
                stream.body_end()  # trailers are not forwarded (nor are they from HTTP/1.1)
        elif isinstance(ev, ConnectionTerminated):
            self._end_all()

    def _request(self, ev: RequestReceived, now: float) -> None:
        sid = ev.stream_id
        assert sid is not None and ev.headers is not None
        if self.goaway:
            self.h2.reset_stream(sid, ErrorCodes.REFUSED_STREAM)
            return
        try:
            h = parse_request((bytes(n), bytes(v)) for n, v in ev.headers)
        except Malformed:
            self.h2.reset_stream(sid, ErrorCodes.PROTOCOL_ERROR)
            return
        plan = self.svc.plan  # a reload applies from the next request on
        self.plan = plan
        self.last_stream = sid
        has_body = ev.stream_ended is None
        req = Request(now)
        req.method = h.method
        req.version = b"2"  # for the access log; the instance gets HTTP/1.1
        req.url = h.path
        req.host = h.host
        req.names = h.names
        req.values = h.values
        req.content_length = h.content_length
        req.chunked = has_body and h.content_length is None
        req.expect_continue = h.expect_continue and has_body
        req.is_head = h.method == b"HEAD"
        req.xff = h.xff
        req.via = h.via
        if plan.rid_name:
            req.rid = request_id.take(h.names, h.values, plan.rid_name)
        req.lines, req.head = upstream_head(h, self.peer, self.proto, has_body)
        stream = H2Stream(self, sid, req)
        self.streams[sid] = stream
        status = 0
        if h.header_bytes > plan.max_header_bytes:
            status = 431
        elif len(h.path) > plan.max_request_line:
            status = 414
        elif h.content_length is not None and h.content_length > plan.max_body_bytes:
            status = 413
        if has_body:
            req.body = BodyStore(plan.body_in_memory, plan.max_body_bytes, plan.tmpdir)
        else:
            req.complete = True
        if status:
            ex = Exchange.error(stream, req, status)
        else:
            path = h.path if h.path != b"*" else b"/"
            ex = Exchange(stream, req, plan.routes.match(h.host, path), False)
        stream.ex = ex
        ex.start()

    def _window(self, sid: int | None) -> None:
        if not sid:
            for stream in list(self.streams.values()):
                if stream.pending:
                    stream.push()
            return
        one = self.streams.get(sid)
        if one is not None and one.pending:
            one.push()

    def eof_received(self) -> bool:
        return False

    def connection_lost(self, exc: Exception | None) -> None:
        self.closed = True
        streams, self.streams = self.streams, {}
        for stream in streams.values():
            stream.client_gone()
        self.svc.closed(self)

    def pause_writing(self) -> None:
        self.write_paused = True
        for stream in self.streams.values():
            stream.flow()

    def resume_writing(self) -> None:
        self.write_paused = False
        for stream in list(self.streams.values()):
            stream.flow()

    # --- from the streams -------------------------------------------------------------------
    def flush(self) -> None:
        """Write what h2 has queued, once per turn of the loop: the frames of every stream that
        answered meanwhile go out in one write (one send(2)); a write per frame was most of a
        stream's cost (46 us each, cProfile under h2load)."""
        if self.flush_due or self.closed:
            return
        self.flush_due = True
        self.loop.call_soon(self.flush_now)

    def flush_now(self) -> None:
        self.flush_due = False
        if self.closed or self.h2 is None:
            return
        out = self.h2.data_to_send()
        if out:
            self.transport.write(out)

    def reset_stream(self, stream: H2Stream, code: ErrorCodes) -> None:
        self.streams.pop(stream.sid, None)
        if not self.closed:
            self.h2.reset_stream(stream.sid, code)
            self.flush()
        self._idle()

    def forget(self, stream: H2Stream) -> None:
        self.streams.pop(stream.sid, None)
        self._idle()

    def _idle(self) -> None:
        if self.streams or self.closed:
            return
        if self.goaway:
            self.flush_now()
            self.transport.close()
            return
        self.since = self.loop.time()
        self.idle_limit = self.plan.idle_timeout

    # --- ending ----------------------------------------------------------------------------
    def calm(self, why: Abuse) -> None:
        """The client overdrew a budget: GOAWAY (ENHANCE_YOUR_CALM), and close."""
        log.warning("%s: HTTP/2 client %s: %s; closing", self.svc.name, self.peer.decode(), why.value)
        self.h2.close_connection(ErrorCodes.ENHANCE_YOUR_CALM, last_stream_id=self.last_stream)
        self._end_all()

    def _end_all(self) -> None:
        self.flush_now()
        streams, self.streams = self.streams, {}
        for stream in streams.values():
            stream.closed = True
            stream.client_gone()
        if not self.closed:
            self.transport.close()

    def shutdown(self) -> None:
        """Graceful stop: GOAWAY naming the last stream taken; close once they are answered."""
        if self.closed or self.goaway:
            return
        self.goaway = True
        self.flush_now()
        # Sent beside h2 (whose close_connection would also end the open streams).
        frame = GoAwayFrame(0, last_stream_id=self.last_stream, error_code=ErrorCodes.NO_ERROR)
        self.transport.write(frame.serialize())
        if not self.streams:
            self.transport.close()

    def abort(self) -> None:
        self.transport.abort()

    def check(self, now: float) -> None:
        """The service's sweeper: upstream timeouts per stream, a stalled client, idleness."""
        if self.closed:
            return
        plan = self.plan
        if not self.streams:
            if now - self.since >= self.idle_limit:
                self.h2.close_connection(ErrorCodes.NO_ERROR, last_stream_id=self.last_stream)
                self._end_all()
            return
        blocked = self.write_paused
        for stream in list(self.streams.values()):
            ex = stream.ex
            if ex is not None and not stream.done:
                ex.check(now, plan.response_timeout, plan.idle_timeout)
            if stream.pending:
                blocked = True
        if not blocked or self.sent != self.watch:
            self.watch = self.sent
            self.stall_since = now
        elif now - self.stall_since >= plan.idle_timeout:
            log.info("%s: HTTP/2 client %s reads nothing; closing", self.svc.name, self.peer.decode())
            self.h2.close_connection(ErrorCodes.ENHANCE_YOUR_CALM, last_stream_id=self.last_stream)
            self._end_all()
