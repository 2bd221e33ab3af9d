"""What the gateway judges in an HTTP/1.1 head before forwarding it (issue 19): the Host grammar,
the number of fields, the request line's default limit, `Upgrade: h2c`, and `Date` on the
gateway's own answers. "Never forwarded" is asserted on what the instance saw."""

from __future__ import annotations

import email.utils
import json
import socket

import pytest

from tidegate.testing.gateway import gateway_config as config
from tidegate.testing.wire import ResponseReader, exchange


@pytest.mark.parametrize(
    "host",
    [
        b"user@t",
        b"user:pw@example.com",
        b"exa mple.com",
        b"t\tx",
        b"t:80x",
        b"t/evil",
        b"[::1",
        b"t#f",
        b"t:123456",
    ],
)
def test_a_host_outside_the_grammar_is_400_never_forwarded(host: bytes, faults, gateway) -> None:
    inst = faults("echo")
    gw = gateway(config([inst.address]))
    answers, closed = exchange(gw.host, gw.port, b"GET /h HTTP/1.1\r\nHost: " + host + b"\r\n\r\n")
    assert [r.status for r in answers] == [400] and closed
    assert inst.seen == []
    # The same Host in a head the fast lane would not take (a body follows) is judged alike.
    raw = b"POST /h HTTP/1.1\r\nHost: " + host + b"\r\nContent-Length: 2\r\n\r\nab"
    answers, closed = exchange(gw.host, gw.port, raw)
    assert [r.status for r in answers] == [400] and closed
    assert inst.seen == []


@pytest.mark.parametrize("host", [b"example.com", b"example.com:8080", b"127.0.0.1:80", b"[::1]:8080", b"t"])
def test_a_good_host_is_forwarded(host: bytes, faults, gateway) -> None:
    inst = faults("echo")
    gw = gateway(config([inst.address]))
    answers, _ = exchange(
        gw.host, gw.port, b"GET /ok HTTP/1.1\r\nHost: " + host + b"\r\nConnection: close\r\n\r\n"
    )
    assert [r.status for r in answers] == [200]
    assert [s.path for s in inst.seen] == ["/ok"]


def _fields(n: int) -> bytes:
    return b"".join(b"X-F%d: v\r\n" % i for i in range(n))


def test_the_number_of_fields_is_limited_to_256_by_default(faults, gateway) -> None:
    inst = faults("echo")
    gw = gateway(config([inst.address]))
    # Host + 255 = 256 fields: served, on either lane (no body, then with one).
    for tail in (b"", b"Content-Length: 1\r\n"):
        n = 255 - (1 if tail else 0)
        raw = b"POST /many HTTP/1.1\r\nHost: t\r\n" + _fields(n) + tail + b"\r\n" + (b"x" if tail else b"")
        answers, _ = exchange(
            gw.host, gw.port, raw + b"GET /end HTTP/1.1\r\nHost: t\r\nConnection: close\r\n\r\n"
        )
        assert [r.status for r in answers] == [200, 200], n
    # 257 fields: 431, not forwarded.
    for tail in (b"", b"Content-Length: 1\r\n"):
        n = 256 - (1 if tail else 0)
        raw = b"POST /toomany HTTP/1.1\r\nHost: t\r\n" + _fields(n) + tail + b"\r\n" + (b"x" if tail else b"")
        answers, closed = exchange(gw.host, gw.port, raw)
        assert [r.status for r in answers] == [431] and closed, n
    assert "/toomany" not in {s.path for s in inst.seen}


def test_the_field_limit_is_configurable(faults, gateway) -> None:
    inst = faults("echo")
    gw = gateway(config([inst.address], limits={"max_header_fields": 10}))
    answers, _ = exchange(
        gw.host, gw.port, b"GET /a HTTP/1.1\r\nHost: t\r\n" + _fields(9) + b"Connection: close\r\n\r\n"
    )
    assert [r.status for r in answers] == [431]  # Host + 9 + Connection = 11
    answers, _ = exchange(
        gw.host, gw.port, b"GET /b HTTP/1.1\r\nHost: t\r\n" + _fields(8) + b"Connection: close\r\n\r\n"
    )
    assert [r.status for r in answers] == [200]
    assert [s.path for s in inst.seen] == ["/b"]


def test_a_long_query_string_passes_and_the_request_line_limit_is_32k(faults, gateway) -> None:
    inst = faults("echo")
    gw = gateway(config([inst.address]))
    query = b"q=" + b"a" * (20 * 1024)
    answers, _ = exchange(
        gw.host, gw.port, b"GET /search?" + query + b" HTTP/1.1\r\nHost: t\r\nConnection: close\r\n\r\n"
    )
    assert [r.status for r in answers] == [200]
    too_long = b"GET /" + b"u" * (33 * 1024) + b" HTTP/1.1\r\nHost: t\r\n\r\n"
    answers, closed = exchange(gw.host, gw.port, too_long)
    assert [r.status for r in answers] == [414] and closed
    assert [s.path[:7] for s in inst.seen] == ["/search"]


def test_upgrade_h2c_is_served_as_http_1_1(backends, gateway) -> None:
    (b,) = backends("a")
    gw = gateway(config([b.address]))
    with socket.create_connection((gw.host, gw.port), timeout=10) as s:
        s.sendall(
            b"GET /headers HTTP/1.1\r\nHost: t\r\nConnection: Upgrade, HTTP2-Settings\r\n"
            b"Upgrade: h2c\r\nHTTP2-Settings: AAMAAABkAARAAAAAAAIAAAAA\r\n\r\n"
        )
        reader = ResponseReader(s)
        r = reader.read()
        assert r.status == 200  # not 101: the gateway does not switch, and nothing behind it may
        seen = {k.lower() for k, _ in json.loads(r.body)["headers"]}
        assert not seen & {"upgrade", "http2-settings"}, seen
        assert r.header("connection") != "close"
        # The connection goes on as HTTP/1.1.
        s.sendall(b"GET / HTTP/1.1\r\nHost: t\r\n\r\n")
        assert reader.read().body == b"a"


def test_every_answer_the_gateway_makes_carries_date(faults, gateway) -> None:
    refusing = faults("echo", listen=False)
    gw = gateway(config([refusing.address]))
    for raw in (
        b"GET / HTTP/1.1\r\nHost: t\r\nConnection: close\r\n\r\n",  # 502
        b"GET / HTTP/1.1\r\nHost: a@b\r\n\r\n",  # 400
        b"GET / HTTP/1.1\r\nHost: t\r\nExpect: teapot\r\n\r\n",  # 417
    ):
        answers, _ = exchange(gw.host, gw.port, raw)
        date = answers[0].header("date")
        assert date is not None, answers[0].status
        assert email.utils.parsedate_to_datetime(date).tzinfo is not None
