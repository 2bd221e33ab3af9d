"""Reload: new routes, pools and limits apply to the next request; open connections stay open."""

from __future__ import annotations

import http.client
import socket

from tidegate.testing.gateway import gateway_config as config
from tidegate.testing.wire import ResponseReader


def test_reload_changes_routes_and_limits_without_dropping_a_connection(backends, gateway) -> None:
    a, b = backends("a", "b")
    gw = gateway(config([a.address]))
    c = http.client.HTTPConnection(gw.host, gw.port, timeout=10)
    c.request("GET", "/api/x")
    r = c.getresponse()
    assert r.read() == b"a"
    sock = c.sock

    new = config(
        [a.address],
        pools=[{"name": "api", "instances": [{"address": b.address}]}],
        http={"routes": [{"path_prefix": "/api", "pool": "api"}]},
        limits={"max_header_bytes": "2KiB"},
    )
    gw.reload(new)

    c.request("GET", "/api/x")  # the same keep-alive connection, the new route
    r = c.getresponse()
    assert r.read() == b"b" and c.sock is sock
    c.request("GET", "/other")
    assert c.getresponse().read() == b"a"
    c.request("GET", "/", headers={"X-Big": "v" * 3000})  # the new, lower limit
    r = c.getresponse()
    assert r.status == 431 and r.getheader("Connection") == "close"
    r.read()
    c.close()


def test_http10_keep_alive_is_honoured(backends, gateway) -> None:
    (a,) = backends("a")
    gw = gateway(config([a.address]))
    with socket.create_connection((gw.host, gw.port), timeout=10) as s:
        reader = ResponseReader(s)
        for _ in range(3):
            s.sendall(b"GET /bytes/5 HTTP/1.0\r\nConnection: keep-alive\r\n\r\n")
            r = reader.read()
            assert r.status == 200 and bytes(r.body) == b"xxxxx"
            assert r.header("connection") == "keep-alive"
        s.sendall(b"GET /bytes/5 HTTP/1.0\r\n\r\n")  # no keep-alive: closed after the answer
        r = reader.read()
        assert r.status == 200 and r.header("connection") == "close"
        assert reader.read_until_close() == b""
