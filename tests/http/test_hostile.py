"""Hostile and bad input: a complete, clear answer, nothing forwarded, the gateway keeps serving.

Requests go to an ECHO fault instance, which records every request it receives: "never
forwarded" is asserted on what the instance saw, not on what the gateway says.
"""

from __future__ import annotations

import http.client
import socket
import time

import pytest

from tidegate.testing.gateway import gateway_config as config
from tidegate.testing.wire import ResponseReader, exchange

BAD_FRAMING = {
    "both content-length and transfer-encoding": (
        b"POST /smuggle HTTP/1.1\r\nHost: t\r\nContent-Length: 4\r\nTransfer-Encoding: chunked\r\n\r\n"
        b"0\r\n\r\nGET /admin HTTP/1.1\r\nHost: t\r\n\r\n",
        400,
    ),
    "transfer-encoding then content-length": (
        b"POST /smuggle HTTP/1.1\r\nHost: t\r\nTransfer-Encoding: chunked\r\nContent-Length: 4\r\n\r\n"
        b"0\r\n\r\n",
        400,
    ),
    "duplicate content-length": (
        b"POST /smuggle HTTP/1.1\r\nHost: t\r\nContent-Length: 4\r\nContent-Length: 4\r\n\r\nabcd",
        400,
    ),
    "two content-length values in one": (
        b"POST /smuggle HTTP/1.1\r\nHost: t\r\nContent-Length: 4, 4\r\n\r\nabcd",
        400,
    ),
    "signed content-length": (b"POST /smuggle HTTP/1.1\r\nHost: t\r\nContent-Length: +4\r\n\r\nabcd", 400),
    "non-numeric content-length": (
        b"POST /smuggle HTTP/1.1\r\nHost: t\r\nContent-Length: 4x\r\n\r\nabcd",
        400,
    ),
    "transfer coding other than chunked": (
        b"POST /smuggle HTTP/1.1\r\nHost: t\r\nTransfer-Encoding: gzip, chunked\r\n\r\n0\r\n\r\n",
        501,
    ),
    "transfer-encoding in HTTP/1.0": (
        b"POST /smuggle HTTP/1.0\r\nTransfer-Encoding: chunked\r\n\r\n0\r\n\r\n",
        400,
    ),
    "no host in HTTP/1.1": (b"GET /nohost HTTP/1.1\r\nUser-Agent: t\r\n\r\n", 400),
    "two hosts": (b"GET /twohosts HTTP/1.1\r\nHost: a\r\nHost: b\r\n\r\n", 400),
    "malformed request line": (b"GET /x HTTP/1.1 extra\r\nHost: t\r\n\r\n", 400),
    "garbage": (b"\x16\x03\x01\x02\x00\x01\x00\x01\xfc\x03\x03garbage\r\n\r\n", 400),
    "space before colon": (b"GET /x HTTP/1.1\r\nHost : t\r\n\r\n", 400),
    "obsolete line folding": (b"GET /x HTTP/1.1\r\nHost: t\r\nX-A: b\r\n c\r\n\r\n", 400),
    "bare LF": (b"GET /x HTTP/1.1\r\nHost: t\nX-A: b\r\n\r\n", 400),
    "bad chunk size": (
        b"POST /x HTTP/1.1\r\nHost: t\r\nTransfer-Encoding: chunked\r\n\r\nzz\r\nab\r\n0\r\n\r\n",
        400,
    ),
    "connect method": (b"CONNECT example.test:443 HTTP/1.1\r\nHost: example.test:443\r\n\r\n", 405),
    "unknown expectation": (b"GET /x HTTP/1.1\r\nHost: t\r\nExpect: teapot\r\n\r\n", 417),
}


def assert_serves(gw) -> None:
    c = http.client.HTTPConnection(gw.host, gw.port, timeout=10)
    c.request("GET", "/still-alive")
    r = c.getresponse()
    assert r.status == 200
    r.read()
    c.close()


@pytest.mark.parametrize("case", sorted(BAD_FRAMING))
def test_bad_requests_are_answered_and_never_forwarded(case, faults, gateway) -> None:
    inst = faults("echo")
    gw = gateway(config([inst.address]))
    raw, status = BAD_FRAMING[case]
    answers, closed = exchange(gw.host, gw.port, raw)
    assert [r.status for r in answers] == [status]
    assert answers[0].header("connection") == "close" and closed
    assert answers[0].complete
    assert inst.seen == []  # nothing reached the instance
    assert_serves(gw)
    assert [s.path for s in inst.seen] == ["/still-alive"]


def test_a_bad_request_behind_good_pipelined_ones_is_answered_after_them(faults, gateway) -> None:
    inst = faults("echo")
    gw = gateway(config([inst.address]))
    raw = (
        b"GET /one HTTP/1.1\r\nHost: t\r\n\r\n"
        b"GET /two HTTP/1.1\r\nHost: t\r\n\r\n"
        b"POST /bad HTTP/1.1\r\nHost: t\r\nContent-Length: 1\r\nTransfer-Encoding: chunked\r\n\r\n0\r\n\r\n"
        b"GET /never HTTP/1.1\r\nHost: t\r\n\r\n"
    )
    answers, closed = exchange(gw.host, gw.port, raw)
    assert [r.status for r in answers] == [200, 200, 400] and closed
    assert [s.path for s in inst.seen] == ["/one", "/two"]


def test_limits_431_414_413(faults, gateway) -> None:
    inst = faults("echo")
    gw = gateway(
        config(
            [inst.address],
            limits={"max_header_bytes": "4KiB", "max_request_line_bytes": "1KiB", "max_body_bytes": "10KiB"},
        )
    )
    big_header = b"GET / HTTP/1.1\r\nHost: t\r\nX-Big: " + b"a" * 5000 + b"\r\n\r\n"
    many_headers = (
        b"GET / HTTP/1.1\r\nHost: t\r\n"
        + b"".join(b"X-H%d: %s\r\n" % (i, b"v" * 50) for i in range(200))
        + b"\r\n"
    )
    # a header that never ends: cut off once the head passes the limits, not buffered forever
    endless = b"GET / HTTP/1.1\r\nHost: t\r\nX-Endless: " + b"a" * 200_000
    long_url = b"GET /" + b"u" * 2000 + b" HTTP/1.1\r\nHost: t\r\n\r\n"
    big_cl = b"POST /upload HTTP/1.1\r\nHost: t\r\nContent-Length: 20000\r\n\r\n" + b"b" * 20000
    big_chunked = (
        b"POST /upload HTTP/1.1\r\nHost: t\r\nTransfer-Encoding: chunked\r\n\r\n"
        + b"".join(b"1000\r\n" + b"c" * 4096 + b"\r\n" for _ in range(4))
        + b"0\r\n\r\n"
    )
    for raw, status in [
        (big_header, 431),
        (many_headers, 431),
        (endless, 431),
        (long_url, 414),
        (big_cl, 413),
        (big_chunked, 413),
    ]:
        answers, closed = exchange(gw.host, gw.port, raw)
        assert [r.status for r in answers] == [status], raw[:60]
        assert answers[0].header("connection") == "close" and closed
    # a chunked body over the limit may already be streaming to the instance when the limit
    # is crossed; the instance never gets a complete request (the gateway closes on it)
    assert all(not s.answered or s.path != "/upload" for s in inst.seen)
    assert_serves(gw)


def test_413_for_a_declared_length_comes_before_100_continue(faults, gateway) -> None:
    inst = faults("echo")
    gw = gateway(config([inst.address], limits={"max_body_bytes": "1KiB"}))
    raw = b"POST /up HTTP/1.1\r\nHost: t\r\nContent-Length: 5000\r\nExpect: 100-continue\r\n\r\n"
    answers, closed = exchange(gw.host, gw.port, raw)
    assert [r.status for r in answers] == [413] and closed
    assert inst.seen == []


def test_slow_headers_get_408_and_close(faults, gateway) -> None:
    inst = faults("echo")
    gw = gateway(config([inst.address], limits={"client_header_timeout": "300ms"}))
    with socket.create_connection((gw.host, gw.port), timeout=10) as s:
        s.sendall(b"GET /slow HTTP/1.1\r\nHost: t\r\n")  # the head never ends
        t0 = time.monotonic()
        reader = ResponseReader(s)
        r = reader.read()
        waited = time.monotonic() - t0
        assert r.status == 408 and r.header("connection") == "close"
        assert reader.read_until_close() == b""  # then closed
    assert waited >= 0.25  # not before the timeout; a timeout that never fires fails on the socket's
    assert inst.seen == []
    assert_serves(gw)


def test_idle_keepalive_connections_are_closed(faults, gateway) -> None:
    inst = faults("echo")
    gw = gateway(config([inst.address], limits={"idle_timeout": "300ms"}))
    with socket.create_connection((gw.host, gw.port), timeout=10) as s:
        s.sendall(b"GET /a HTTP/1.1\r\nHost: t\r\n\r\n")
        reader = ResponseReader(s)
        assert reader.read().status == 200
        t0 = time.monotonic()
        assert reader.read_until_close() == b""  # closed by the gateway, no answer owed
        assert time.monotonic() - t0 >= 0.25  # (never closing fails on the socket's timeout)


def test_no_instance_or_unreachable_instance_is_502(faults, gateway) -> None:
    refusing = faults("echo", listen=False)
    gw = gateway(config([refusing.address]))
    c = http.client.HTTPConnection(gw.host, gw.port, timeout=10)
    c.request("GET", "/")
    r = c.getresponse()
    assert r.status == 502
    r.read()
    # a gateway error after a whole request keeps the client connection usable
    c.request("GET", "/")
    assert c.getresponse().status == 502
    c.close()
    figures = gw.counters()[refusing.address]
    assert figures.failures >= 2 and figures.active == 0

    empty = gateway({"pools": [{"name": "web"}], "http": [{"listen": "127.0.0.1:0", "pool": "web"}]})
    answers, _ = exchange(empty.host, empty.port, b"GET / HTTP/1.1\r\nHost: t\r\nConnection: close\r\n\r\n")
    assert [r.status for r in answers] == [502]


def test_upstream_response_timeout_is_504(faults, gateway) -> None:
    slow = faults("slow", delay=None)  # reads the request, never answers
    gw = gateway(config([slow.address], limits={"upstream_response_timeout": "300ms"}, retry={"tries": 1}))
    t0 = time.monotonic()
    c = http.client.HTTPConnection(gw.host, gw.port, timeout=10)
    c.request("GET", "/")
    r = c.getresponse()
    assert r.status == 504
    r.read()
    assert time.monotonic() - t0 >= 0.25  # (no 504 at all fails on the client's timeout)
    c.close()
    assert len(slow.seen) == 1


def test_a_stalled_upload_is_the_clients_fault_not_the_instances(faults, gateway) -> None:
    inst = faults("echo")
    gw = gateway(config([inst.address], limits={"idle_timeout": "300ms", "upstream_response_timeout": "20s"}))
    with socket.create_connection((gw.host, gw.port), timeout=10) as s:
        s.sendall(b"POST /upload HTTP/1.1\r\nHost: t\r\nContent-Length: 100\r\n\r\n" + b"x" * 10)
        t0 = time.monotonic()
        reader = ResponseReader(s)
        r = reader.read()
        assert r.status == 408 and r.header("connection") == "close"
        assert time.monotonic() - t0 >= 0.25  # the idle timeout, not the 20 s upstream one (socket: 10 s)
    figures = gw.counters()[inst.address]
    assert figures.failures == 0 and figures.active == 0
    assert_serves(gw)


def test_at_max_connections_new_clients_wait_in_the_backlog_not_fail(faults, gateway) -> None:
    """The listener pauses at max_connections: a client beyond it is neither refused nor reset;
    its request is answered once another connection closes."""
    inst = faults("echo")
    gw = gateway(config([inst.address], http={"max_connections": 5}))
    held = []
    try:
        for i in range(5):
            s = socket.create_connection((gw.host, gw.port), timeout=10)
            s.sendall(b"GET /held%d HTTP/1.1\r\nHost: t\r\n\r\n" % i)
            assert ResponseReader(s).read().status == 200
            held.append(s)
        with socket.create_connection((gw.host, gw.port), timeout=10) as late:  # the backlog took it
            late.sendall(b"GET /late HTTP/1.1\r\nHost: t\r\n\r\n")
            late.settimeout(0.5)
            with pytest.raises(TimeoutError):
                late.recv(1)  # not accepted yet: nothing answers (a reset or close would return)
            assert "/late" not in [s.path for s in inst.seen]
            held.pop().close()
            late.settimeout(10)
            assert ResponseReader(late).read().status == 200
        assert gw.call(lambda: gw.service.gate.figures.pauses["max_connections"]) >= 1
    finally:
        for s in held:
            s.close()
