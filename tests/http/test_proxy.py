"""The gateway proxies through real sockets: distribution, headers, bodies both ways, pipelining."""

from __future__ import annotations

import http.client
import itertools
import json
import socket
from collections import Counter

from tidegate.testing.gateway import gateway_config as config
from tidegate.testing.wire import ResponseReader, parse_all


def get(gw, path: str = "/", method: str = "GET", body: bytes | None = None, headers=None):
    c = http.client.HTTPConnection(gw.host, gw.port, timeout=10)
    try:
        c.request(method, path, body=body, headers=headers or {})
        r = c.getresponse()
        return r.status, dict(r.getheaders()), r.read()
    finally:
        c.close()


def test_round_robin_over_three_backends_on_one_keepalive_connection(backends, gateway) -> None:
    bs = backends("a", "b", "c")
    gw = gateway(config([b.address for b in bs]))
    c = http.client.HTTPConnection(gw.host, gw.port, timeout=10)
    seen = []
    for _ in range(30):
        c.request("GET", "/")
        r = c.getresponse()
        assert r.status == 200
        seen.append(r.read().decode())
    c.close()
    assert Counter(seen) == {"a": 10, "b": 10, "c": 10}
    # strictly in turn, never twice in a row
    assert all(x != y for x, y in itertools.pairwise(seen))
    counters = gw.counters()
    assert all(ct.completed == 10 and ct.active == 0 and ct.failures == 0 for ct in counters.values())
    assert all(ct.bytes_in > 0 and ct.bytes_out > 0 for ct in counters.values())


def test_upstream_connections_are_kept_alive_and_reused(faults, gateway) -> None:
    inst = faults("echo", name="a")
    gw = gateway(config([inst.address]))
    for i in range(5):
        status, _, _ = get(gw, f"/r{i}")
        assert status == 200
    assert inst.connections == 1
    assert [s.index_on_connection for s in inst.seen] == [0, 1, 2, 3, 4]


def test_forwarding_headers_added_and_hop_by_hop_removed(backends, gateway) -> None:
    (b,) = backends("a")
    gw = gateway(config([b.address]))
    status, headers, body = get(
        gw,
        "/headers",
        headers={
            "Host": "shop.example.test",
            "X-Forwarded-For": "203.0.113.9",
            "X-Forwarded-Proto": "https",
            "Via": "1.0 edge",
            "Connection": "keep-alive, X-Secret",
            "X-Secret": "hop",
            "Keep-Alive": "timeout=5",
            "TE": "trailers",
            "Proxy-Authorization": "Basic Zm9vOmJhcg==",
            "X-Kept": "yes",
        },
    )
    assert status == 200
    seen = json.loads(body)
    h = {}
    for k, v in seen["headers"]:
        h.setdefault(k, []).append(v)
    assert h["x-forwarded-for"] == ["203.0.113.9, 127.0.0.1"]
    assert h["x-forwarded-proto"] == ["http"]
    assert h["x-forwarded-host"] == ["shop.example.test"]
    assert h["via"] == ["1.0 edge, 1.1 tidegate"]
    assert h["host"] == ["shop.example.test"]
    assert h["x-kept"] == ["yes"]
    for gone in ("x-secret", "keep-alive", "te", "proxy-authorization", "connection"):
        assert gone not in h, gone
    assert headers["Via"] == "1.1 tidegate"


def test_bodies_with_content_length_and_chunked_both_ways(backends, gateway) -> None:
    (b,) = backends("a")
    gw = gateway(config([b.address]))
    payload = bytes(range(256)) * 4000  # ~1 MB, not compressible into a coincidence
    status, _, body = get(gw, "/echo", "POST", payload)
    assert status == 200 and body == payload

    # chunked upload: the client sends chunks, the instance gets the same bytes
    with socket.create_connection((gw.host, gw.port), timeout=10) as s:
        pieces = [b"hello ", b"chunked ", b"world" * 1000]
        s.sendall(b"POST /echo HTTP/1.1\r\nHost: t\r\nTransfer-Encoding: chunked\r\n\r\n")
        for p in pieces:
            s.sendall(b"%x\r\n%s\r\n" % (len(p), p))
        s.sendall(b"0\r\nX-Trailer: t\r\n\r\n")
        r = ResponseReader(s).read()
        assert r.status == 200 and bytes(r.body) == b"".join(pieces)

    # chunked download (the instance sends no Content-Length): re-framed chunked to the client
    with socket.create_connection((gw.host, gw.port), timeout=10) as s:
        s.sendall(b"GET /chunked/300000 HTTP/1.1\r\nHost: t\r\n\r\n")
        r = ResponseReader(s).read()
        assert r.status == 200 and r.header("transfer-encoding") == "chunked"
        assert r.header("content-length") is None and bytes(r.body) == b"x" * 300000

    # an HTTP/1.0 client cannot take chunked: the body runs until the gateway closes
    with socket.create_connection((gw.host, gw.port), timeout=10) as s:
        s.sendall(b"GET /chunked/5000 HTTP/1.0\r\n\r\n")
        raw = ResponseReader(s).read_until_close()
        head, _, body = raw.partition(b"\r\n\r\n")
        assert head.startswith(b"HTTP/1.1 200") and b"chunked" not in head.lower() and body == b"x" * 5000


def test_head_and_no_body_statuses_keep_the_connection_in_step(backends, gateway) -> None:
    (b,) = backends("a")
    gw = gateway(config([b.address]))
    c = http.client.HTTPConnection(gw.host, gw.port, timeout=10)
    for _ in range(3):
        c.request("HEAD", "/bytes/1000")
        r = c.getresponse()
        assert r.status == 200 and r.getheader("Content-Length") == "1000" and r.read() == b""
        c.request("GET", "/status/204")
        r = c.getresponse()
        assert r.status == 204 and r.read() == b""
        c.request("GET", "/bytes/10")
        r = c.getresponse()
        assert r.status == 200 and r.read() == b"x" * 10
    c.close()


def test_expect_100_continue(backends, gateway) -> None:
    (b,) = backends("a")
    gw = gateway(config([b.address]))
    with socket.create_connection((gw.host, gw.port), timeout=10) as s:
        s.sendall(b"POST /echo HTTP/1.1\r\nHost: t\r\nContent-Length: 5\r\nExpect: 100-continue\r\n\r\n")
        reader = ResponseReader(s)
        interim = reader.read()
        assert interim.status == 100
        s.sendall(b"hello")
        final = reader.read()
        assert final.status == 200 and bytes(final.body) == b"hello"


def test_pipelined_requests_are_answered_in_order(backends, gateway) -> None:
    bs = backends("a", "b")
    gw = gateway(config([b.address for b in bs]))
    # The first request is the slowest: answers must still come back in request order.
    reqs = [b"GET /slow?ms=300 HTTP/1.1\r\nHost: t\r\n\r\n"]
    reqs += [b"POST /echo HTTP/1.1\r\nHost: t\r\nContent-Length: 2\r\n\r\n%02d" % i for i in range(1, 8)]
    reqs += [b"GET /bytes/3 HTTP/1.1\r\nHost: t\r\nConnection: close\r\n\r\n"]
    with socket.create_connection((gw.host, gw.port), timeout=10) as s:
        s.sendall(b"".join(reqs))
        raw = ResponseReader(s).read_until_close()
    answers = parse_all(raw)
    assert [r.status for r in answers] == [200] * 9
    assert [bytes(r.body) for r in answers[1:8]] == [b"%02d" % i for i in range(1, 8)]
    assert bytes(answers[0].body) in (b"a", b"b") and bytes(answers[8].body) == b"xxx"
    assert answers[8].header("connection") == "close"


def test_routes_by_host_and_path_prefix(backends, gateway) -> None:
    a, b, c = backends("a", "b", "c")
    cfg = config(
        [a.address],
        pools=[
            {"name": "api", "instances": [{"address": b.address}]},
            {"name": "admin", "instances": [{"address": c.address}]},
        ],
        http={
            "routes": [
                {"host": "api.example.test", "path_prefix": "/", "pool": "api"},
                {"path_prefix": "/admin", "pool": "admin"},
            ]
        },
    )
    gw = gateway(cfg)
    assert get(gw, "/x", headers={"Host": "api.example.test:8080"})[2] == b"b"
    assert get(gw, "/x", headers={"Host": "API.example.test"})[2] == b"b"
    assert get(gw, "/admin/users", headers={"Host": "www.example.test"})[2] == b"c"
    assert get(gw, "/x", headers={"Host": "www.example.test"})[2] == b"a"


def test_a_slow_reader_then_a_reused_connection(backends, gateway) -> None:
    (b,) = backends("a")
    gw = gateway(config([b.address], limits={"upstream_response_timeout": "2s"}))
    size = 4 * 1024 * 1024
    with socket.create_connection((gw.host, gw.port), timeout=10) as s:
        # a small receive window: the gateway pauses and resumes the instance many times
        s.setsockopt(socket.SOL_SOCKET, socket.SO_RCVBUF, 65536)
        s.sendall(b"GET /bytes/%d HTTP/1.1\r\nHost: t\r\n\r\n" % size)
        r = ResponseReader(s).read()
        assert r.status == 200 and len(r.body) == size
    # the one pooled connection is reused now: it must be reading
    status, _, body = get(gw, "/bytes/3")
    assert status == 200 and body == b"xxx"
    figures = gw.counters()[b.address]
    assert figures.failures == 0 and figures.completed == 2
