"""WebSocket (and any Upgrade) is tunnelled: 101 passed on, then raw bytes both ways."""

from __future__ import annotations

import json
import os
import socket

from websockets.sync.client import connect

from tidegate.testing.gateway import gateway_config as config
from tidegate.testing.wire import ResponseReader


def test_websocket_echo_through_the_gateway(backends, gateway) -> None:
    bs = backends("a", "b")
    gw = gateway(config([b.address for b in bs]))
    with connect(f"ws://{gw.host}:{gw.port}/ws", open_timeout=10, close_timeout=5) as ws:
        for i in range(20):
            ws.send(f"hello {i}")
            assert ws.recv(timeout=10) == f"hello {i}"
        big = os.urandom(1000_000)  # incompressible (permessage-deflate is on)
        ws.send(big)
        assert ws.recv(timeout=10) == big
    # the gateway still serves plain HTTP on other connections afterwards
    with socket.create_connection((gw.host, gw.port), timeout=10) as s:
        s.sendall(b"GET / HTTP/1.1\r\nHost: t\r\n\r\n")
        assert ResponseReader(s).read().status == 200
    counters = list(gw.counters().values())
    assert sum(c.bytes_in for c in counters) > len(big) and sum(c.bytes_out for c in counters) > len(big)
    assert all(c.active == 0 for c in counters)


def test_upgrade_refused_by_the_instance_is_an_ordinary_answer_then_close(backends, gateway) -> None:
    (b,) = backends("a")
    gw = gateway(config([b.address]))
    with socket.create_connection((gw.host, gw.port), timeout=10) as s:
        # uvicorn answers an upgrade it does not speak as plain HTTP
        s.sendall(b"GET /x HTTP/1.1\r\nHost: t\r\nConnection: Upgrade\r\nUpgrade: foo/1\r\n\r\n")
        reader = ResponseReader(s)
        r = reader.read()
        assert r.status == 200 and r.header("connection") == "close"
        assert reader.read_until_close() == b""


def test_an_h2c_upgrade_is_served_as_http11_and_not_passed_on(backends, gateway) -> None:
    (b,) = backends("a")
    gw = gateway(config([b.address], http={"http2": True}))
    with socket.create_connection((gw.host, gw.port), timeout=10) as s:
        ask = b"Connection: Upgrade, HTTP2-Settings\r\nUpgrade: h2c\r\nHTTP2-Settings: AAMAAABkAARAAAAAAAIAAAAA\r\n"
        # two requests in one write: the second follows the declined upgrade
        s.sendall(b"GET /headers HTTP/1.1\r\nHost: t\r\n" + ask + b"\r\nGET /x HTTP/1.1\r\nHost: t\r\n\r\n")
        reader = ResponseReader(s)
        r = reader.read()
        assert r.status == 200 and r.header("connection") is None
        names = {k for k, _ in json.loads(bytes(r.body))["headers"]}
        assert not names & {"upgrade", "http2-settings", "connection"}
        assert reader.read().status == 200
        s.sendall(b"POST /echo HTTP/1.1\r\nHost: t\r\n" + ask + b"Content-Length: 5\r\n\r\nhello")
        r = reader.read()
        assert r.status == 200 and bytes(r.body) == b"hello"
