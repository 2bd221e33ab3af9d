"""One HTTP/2 stream as the client side of one exchange (http/client_side.py, `raw_http1` False).

The upstream connection hands the response over parsed — `response_head(status, fields)`,
de-chunked `response_data` pieces, `response_end()` — and the stream passes them to h2 as HEADERS
and DATA frames, as far as the client's flow-control windows allow. The gateway's own answers
(502, 504, 413...) come through `answer`.

Flow control end to end: body bytes the windows do not admit wait in `pending`; past
`PENDING_HIGH` bytes the stream pauses its exchange's upstream reading (only that one: the other
streams go on), and resumes it when the client's WINDOW_UPDATEs drain `pending` below
`PENDING_LOW`. So a stream holds at most PENDING_HIGH plus one read of the upstream socket.
"""

from __future__ import annotations

import asyncio
from collections import deque
from http import HTTPStatus
from typing import TYPE_CHECKING, Final

from h2.errors import ErrorCodes

from tidegate.http.attempts import BodyError, BodyTooLarge, SpoolError
from tidegate.http.client_side import ClientSide
from tidegate.http.h2.fields import response_fields
from tidegate.http.request import Request

if TYPE_CHECKING:
    from tidegate.http.exchange import Exchange
    from tidegate.http.h2.connection import H2ClientConnection
    from tidegate.http.upstream import UpstreamConnection

PENDING_HIGH: Final = 256 * 1024
PENDING_LOW: Final = 64 * 1024


def _reason(status: int) -> str:
    try:
        return HTTPStatus(status).phrase
    except ValueError:
        return "Unknown"


class H2Stream(ClientSide):
    def __init__(self, conn: H2ClientConnection, sid: int, req: Request) -> None:
        self.conn = conn
        self.sid = sid
        self.req = req
        self.raw_http1 = False
        self.transport: asyncio.Transport = None  # type: ignore[assignment]  # not raw
        self.loop = conn.loop
        self.svc = conn.svc
        self.upstreams = conn.upstreams
        self.plan = conn.plan
        self.rid_open = conn.plan.rid_open
        self.peer = conn.peer
        self.tls_info = conn.tls_info
        self.closed = False  # reset, or the connection is gone: nothing more goes to the client
        self.closing = False
        self.write_paused = False
        self.ex: Exchange | None = None
        self.done = False  # the exchange is over
        self.answered = False  # the final HEADERS went to h2
        self.ended = False  # the whole answer is in h2 or in `pending`
        self.end_sent = False
        self.pending: deque[bytes] = deque()
        self.pending_bytes = 0

    # --- ClientSide -------------------------------------------------------------------------
    def answer(self, status: int, close: bool, req: Request) -> int:
        if self.closed or self.answered:
            return 0
        answers = self.svc.answers  # the gateway's own answers, for /metrics (tls_metrics.py)
        answers[status] = answers.get(status, 0) + 1
        body = f"{status} {_reason(status)}\n".encode()
        fields = [(b":status", b"%d" % status), (b"content-type", b"text/plain"),
                  (b"content-length", b"%d" % len(body))]
        if req.rid:  # taken or made with the request's head (h2/connection.py)
            fields.append((self.plan.rid_name, req.rid))
        self.conn.h2.send_headers(self.sid, fields)
        self.answered = True
        self.pending.append(body)
        self.pending_bytes += len(body)
        self.ended = True
        self.push()
        return len(body)

    def send_continue(self) -> None:
        if not self.closed and not self.answered:
            self.conn.h2.send_headers(self.sid, [(b":status", b"100")])
            self.conn.flush()

    def last_answer(self, ex: Exchange) -> bool:
        return False

    def open_tunnel(self, conn: UpstreamConnection) -> None:
        raise RuntimeError("no protocol switch over HTTP/2")  # no request asks for one

    def exchange_done(self, ex: Exchange, now: float = -1.0) -> None:
        self.done = True
        if self.closed:
            return
        if not self.ended:
            # Cut after the answer began, or no answer at all: the client must not take it whole.
            self.reset(ErrorCodes.INTERNAL_ERROR)
            return
        self._finish_if_sent()

    def response_head(self, status: int, fields: list[tuple[bytes, bytes]]) -> None:
        if self.closed:
            return
        self.conn.h2.send_headers(self.sid, response_fields(status, fields))
        self.answered = True
        self.conn.flush()

    def response_data(self, data: bytes) -> None:
        if self.closed or self.ended:
            return
        self.pending.append(data)
        self.pending_bytes += len(data)
        self.push()

    def response_end(self) -> None:
        if self.closed or self.ended:
            return
        self.ended = True
        self.push()

    # --- the request body, from the connection ----------------------------------------------
    def body_data(self, data: bytes) -> None:
        req = self.req
        body = req.body
        if body is None or self.done:
            return
        req.body_bytes += len(data)
        try:
            body.append(data)
        except BodyTooLarge:
            self._fail_local(413)
        except SpoolError:
            self._fail_local(507)
        except BodyError:
            pass  # the exchange is over; the rest of the body is dropped

    def body_end(self) -> None:
        req = self.req
        req.complete = True
        if req.body is not None:
            req.body.finish()

    def _fail_local(self, status: int) -> None:
        if self.ex is not None and not self.done:
            self.ex.fail_local(status)

    def client_gone(self) -> None:
        """Reset by the client, or the connection is lost."""
        self.closed = True
        self.pending.clear()
        self.pending_bytes = 0
        ex = self.ex
        if ex is not None and not self.done:
            ex.client_gone()
        elif self.req.body is not None and not self.req.complete:
            self.req.body.abort()

    def reset(self, code: ErrorCodes) -> None:
        if not self.closed:
            self.conn.reset_stream(self, code)
        self.client_gone()

    # --- towards the client -----------------------------------------------------------------
    def push(self) -> None:
        """Send what the windows admit; pause or resume the upstream read by what is left."""
        if self.closed:
            return
        h2c = self.conn.h2
        pending = self.pending
        sid = self.sid
        sent = 0
        while pending:
            window = min(h2c.local_flow_control_window(sid), h2c.max_outbound_frame_size)
            if window <= 0:
                break
            chunk = pending[0]
            if len(chunk) > window:
                h2c.send_data(sid, chunk[:window])
                pending[0] = chunk[window:]
                sent += window
            else:
                last = self.ended and len(pending) == 1
                h2c.send_data(sid, chunk, end_stream=last)
                pending.popleft()
                sent += len(chunk)
                if last:
                    self.end_sent = True
        if sent:
            self.pending_bytes -= sent
            self.conn.sent += 1
        if self.ended and not pending and not self.end_sent:
            h2c.end_stream(sid)
            self.end_sent = True
        self.conn.flush()
        if self.end_sent:
            self._finish_if_sent()
        self.flow()

    def flow(self) -> None:
        paused = self.pending_bytes > PENDING_HIGH or self.conn.write_paused
        if paused == self.write_paused:
            return
        if not paused and self.pending_bytes > PENDING_LOW:
            return
        self.write_paused = paused
        ex = self.ex
        if ex is not None and not self.done:
            if paused:
                ex.pause_upstream()
            else:
                ex.resume_upstream()

    def _finish_if_sent(self) -> None:
        if not (self.done and self.end_sent) or self.closed:
            return
        self.closed = True
        if not self.req.complete:
            # RFC 9113 §8.1: a complete answer ends the request's stream too; the rest of
            # its body is not wanted.
            self.conn.reset_stream(self, ErrorCodes.NO_ERROR)
        self.conn.forget(self)
