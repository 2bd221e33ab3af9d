"""The one place that knows which client protocols a listener speaks, by ALPN name.

A TLS listener offers (in the order `[http.tls] alpn` lists them) only the names served here, so
no client negotiates a protocol nothing speaks; once the handshake is done the connection goes to
the protocol of the name it chose.
"""

from __future__ import annotations

import asyncio
from typing import TYPE_CHECKING, Final, cast

from tidegate.http.client import ClientConnection
from tidegate.http.h2.connection import H2ClientConnection

if TYPE_CHECKING:
    from tidegate.http.service import HttpService

SERVED: Final = ("h2", "http/1.1")


def offered(wanted: list[str]) -> list[str]:
    return [name for name in wanted if name in SERVED]


def client_protocol(svc: HttpService, alpn: str | None) -> asyncio.Protocol:
    """The protocol of a client connection whose handshake chose `alpn` (None: no ALPN, which
    is HTTP/1.1)."""
    if alpn == "h2":
        return cast(asyncio.Protocol, H2ClientConnection(svc, https=True))
    return cast(asyncio.Protocol, ClientConnection(svc))
