"""The client-side interface (http/client_side.py) for a side that asks for the parsed response,
as HTTP/2 streams do: real exchanges, real upstream connections to a real instance on 127.0.0.1.

The side here records what the exchange gives it; the instance answers by path with framings
the parsed path must undo (length, chunked, close-delimited), or with nothing at all.
"""

from __future__ import annotations

import asyncio
from collections.abc import AsyncIterator
from typing import Any

import pytest

from tidegate.config.model import Config
from tidegate.control.runtime.pools import build_pools
from tidegate.http.client_side import ClientSide
from tidegate.http.exchange import Exchange
from tidegate.http.phases import DONE
from tidegate.http.request import Request
from tidegate.http.service import HttpService
from tidegate.service import StandaloneHost

ANSWERS = {
    b"/length": b"HTTP/1.1 200 OK\r\nContent-Type: text/plain\r\nX-Up: 1\r\nContent-Length: 5\r\n\r\nhello",
    b"/chunked": (
        b"HTTP/1.1 200 OK\r\nTransfer-Encoding: chunked\r\nConnection: keep-alive, X-Hop\r\n"
        b"X-Hop: gone\r\nX-Up: 2\r\n\r\n3\r\nabc\r\n4\r\ndefg\r\n0\r\nX-Trailer: t\r\n\r\n"
    ),
    b"/close": b"HTTP/1.1 201 Created\r\nConnection: close\r\nX-Up: 3\r\n\r\nuntil the end",
    b"/nobody": b"HTTP/1.1 204 No Content\r\nX-Up: 4\r\n\r\n",
    b"/head": b"HTTP/1.1 200 OK\r\nContent-Length: 1234\r\n\r\n",
}


class ParsedSide(ClientSide):
    """A client side that wants the response parsed (raw_http1 False), as an HTTP/2 stream."""

    def __init__(self, svc: HttpService) -> None:
        self.raw_http1 = False
        self.loop = svc.loop
        self.svc = svc
        self.upstreams = svc.upstreams
        self.plan = svc.plan
        self.rid_open = svc.plan.rid_open
        self.peer = b"127.0.0.1"
        self.tls_info = None
        self.closed = self.closing = self.write_paused = False
        self.events: list[tuple[str, Any]] = []
        self.done: asyncio.Future[Exchange] = svc.loop.create_future()

    def answer(self, status: int, close: bool, req: Request) -> int:
        self.events.append(("answer", status))
        return 0

    def send_continue(self) -> None:
        self.events.append(("continue", None))

    def last_answer(self, ex: Exchange) -> bool:
        return False

    def exchange_done(self, ex: Exchange, now: float = -1.0) -> None:
        self.done.set_result(ex)

    def response_head(self, status: int, fields: list[tuple[bytes, bytes]]) -> None:
        self.events.append(("head", (status, fields)))

    def response_data(self, data: bytes) -> None:
        self.events.append(("data", data))

    def response_end(self) -> None:
        self.events.append(("end", None))


WRITERS: set[asyncio.StreamWriter] = set()


async def _instance(reader: asyncio.StreamReader, writer: asyncio.StreamWriter) -> None:
    WRITERS.add(writer)
    try:
        while True:
            head = await reader.readuntil(b"\r\n\r\n")
            path = head.split(b" ", 2)[1]
            writer.write(ANSWERS[path])
            await writer.drain()
            if path == b"/close":
                break
    except (asyncio.IncompleteReadError, ConnectionError):
        pass
    writer.close()
    WRITERS.discard(writer)


@pytest.fixture
async def service() -> AsyncIterator[HttpService]:
    server = await asyncio.start_server(_instance, "127.0.0.1", 0)
    port = server.sockets[0].getsockname()[1]
    cfg = Config.model_validate(
        {
            "pools": [{"name": "p", "instances": [{"address": f"127.0.0.1:{port}"}]}],
            "http": [{"listen": "127.0.0.1:0", "pool": "p"}],
        }
    )
    svc = HttpService(cfg.http[0], StandaloneHost(cfg, build_pools(cfg)))
    await svc.start()
    yield svc
    await svc.stop(grace=1.0)
    server.close()
    for writer in list(WRITERS):
        writer.close()
        await writer.wait_closed()
    await server.wait_closed()


async def _exchange(svc: HttpService, path: bytes, method: bytes = b"GET") -> tuple[ParsedSide, Exchange]:
    side = ParsedSide(svc)
    req = Request(svc.loop.time())
    req.method, req.url, req.host, req.complete = method, path, b"t", True
    req.is_head = method == b"HEAD"
    req.head = method + b" " + path + b" HTTP/1.1\r\nHost: t\r\n\r\n"
    ex = Exchange(side, req, svc.plan.routes.match(b"t", path), False)
    ex.start()
    async with asyncio.timeout(10):
        assert await side.done is ex
    return side, ex


def _parts(side: ParsedSide) -> tuple[int, dict[bytes, bytes], bytes, list[str]]:
    kinds = [k for k, _ in side.events]
    status, fields = next(v for k, v in side.events if k == "head")
    body = b"".join(v for k, v in side.events if k == "data")
    return status, dict(fields), body, kinds


@pytest.mark.parametrize(
    ("path", "status", "body", "length"),
    [
        (b"/length", 200, b"hello", b"5"),
        (b"/chunked", 200, b"abcdefg", None),
        (b"/close", 201, b"until the end", None),
        (b"/nobody", 204, b"", None),
    ],
)
async def test_parsed_response(
    service: HttpService, path: bytes, status: int, body: bytes, length: bytes | None
) -> None:
    side, ex = await _exchange(service, path)
    got_status, fields, got_body, kinds = _parts(side)
    assert (got_status, got_body) == (status, body)
    assert kinds[0] == "head" and kinds[-1] == "end" and kinds.count("end") == 1
    assert fields.get(b"content-length") == length
    assert fields[b"X-Up"] and fields[b"via"]
    # Connection-specific fields never reach the side; nor do trailers.
    assert not {b"Connection", b"Transfer-Encoding", b"X-Hop", b"X-Trailer"} & set(fields)
    assert ex.phase == DONE and ex.status == status and not ex.broken
    assert ex.bytes_out == len(body)


async def test_parsed_head_response_has_no_data(service: HttpService) -> None:
    side, _ = await _exchange(service, b"/head", b"HEAD")
    status, fields, _, kinds = _parts(side)
    assert (status, fields[b"content-length"], kinds) == (200, b"1234", ["head", "end"])


async def test_the_gateways_own_answer(service: HttpService) -> None:
    """No instance answers (the only one refuses connections): the side gets answer(502)."""
    inst = next(iter(service.plan.routes.match(b"t", b"/").pool))  # type: ignore[union-attr]
    with socket_refusing() as port:
        inst.port = port
        side, ex = await _exchange(service, b"/length")
    assert side.events == [("answer", 502)] and (ex.status, ex.phase) == (502, DONE)


class socket_refusing:
    """A port on 127.0.0.1 nothing listens on (bound, never listening: connections refused)."""

    def __enter__(self) -> int:
        import socket

        self.sock = socket.socket()
        self.sock.bind(("127.0.0.1", 0))
        return int(self.sock.getsockname()[1])

    def __exit__(self, *exc: object) -> None:
        self.sock.close()
