"""A cleartext listener with `http2 = true`: HTTP/2 when the connection opens with the client
preface (prior knowledge, RFC 9113 §3.3), else HTTP/1.1, so one listener serves both as nginx and
HAProxy do. (A TLS listener picks by ALPN instead: http/service.py.)
"""

from __future__ import annotations

import asyncio
from typing import TYPE_CHECKING, Final, cast

from tidegate.http.client import ClientConnection
from tidegate.http.h2.connection import H2ClientConnection

if TYPE_CHECKING:
    from tidegate.http.service import HttpService

PREFACE: Final = b"PRI * HTTP/2.0\r\n\r\nSM\r\n\r\n"


class Sniffer:
    """Until the first bytes tell which protocol the client speaks."""

    def __init__(self, svc: HttpService) -> None:
        self.svc = svc
        self.transport: asyncio.Transport = None  # type: ignore[assignment]
        self.buf = b""
        self.since = 0.0
        self.queue: tuple[()] = ()
        self.tunnel = None

    def connection_made(self, transport: asyncio.BaseTransport) -> None:
        self.transport = transport  # type: ignore[assignment]
        self.since = self.svc.loop.time()
        self.svc.opened(self)

    def data_received(self, data: bytes) -> None:
        buf = self.buf + data
        n = min(len(buf), len(PREFACE))
        if buf[:n] == PREFACE[:n]:
            if n < len(PREFACE):
                self.buf = buf
                return
            proto: ClientConnection | H2ClientConnection = H2ClientConnection(self.svc)
        else:
            proto = ClientConnection(self.svc)
        self.svc.conns.discard(self)
        self._hand_over(proto, buf)

    def _hand_over(self, proto: ClientConnection | H2ClientConnection, data: bytes) -> None:
        self.transport.set_protocol(cast(asyncio.Protocol, proto))
        proto.connection_made(self.transport)
        proto.data_received(data)

    def eof_received(self) -> bool:
        return False

    def connection_lost(self, exc: Exception | None) -> None:
        self.svc.closed(self)

    def check(self, now: float) -> None:
        if now - self.since >= self.svc.plan.header_timeout:
            self.transport.close()

    def shutdown(self) -> None:
        self.transport.close()

    def abort(self) -> None:
        self.transport.abort()
