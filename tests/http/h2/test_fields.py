"""HTTP/2 header lists to the gateway's requests and back (RFC 9113 §8.2, §8.3)."""

from __future__ import annotations

import pytest
from hypothesis import given
from hypothesis import strategies as st

from tidegate.http.h2.fields import Malformed, parse_request, response_fields, upstream_head

BASE = [(b":method", b"GET"), (b":scheme", b"https"), (b":authority", b"shop.test"), (b":path", b"/a?b=1")]


def test_pseudo_fields_make_the_request_line_and_host() -> None:
    r = parse_request([*BASE, (b"accept", b"*/*")])
    assert (r.method, r.path, r.host) == (b"GET", b"/a?b=1", b"shop.test")
    assert list(zip(r.names, r.values, strict=True)) == [(b"host", b"shop.test"), (b"accept", b"*/*")]
    _, head = upstream_head(r, b"192.0.2.1", b"https", has_body=False)
    assert head.startswith(b"GET /a?b=1 HTTP/1.1\r\nhost: shop.test\r\naccept: */*\r\n")
    assert b"X-Forwarded-For: 192.0.2.1\r\n" in head and b"X-Forwarded-Proto: https\r\n" in head
    assert b"X-Forwarded-Host: shop.test\r\n" in head and b"Via: 2 tidegate\r\n" in head
    assert b"Content-Length" not in head and b"Transfer-Encoding" not in head
    assert head.endswith(b"\r\n\r\n")


def test_authority_wins_over_host_and_host_alone_is_used() -> None:
    assert parse_request([*BASE, (b"host", b"other.test")]).host == b"shop.test"
    no_authority = [f for f in BASE if f[0] != b":authority"] + [(b"host", b"h.test")]
    assert parse_request(no_authority).host == b"h.test"


def test_cookie_crumbs_are_joined_into_one_field() -> None:
    r = parse_request([*BASE, (b"cookie", b"a=1"), (b"x", b"y"), (b"cookie", b"b=2")])
    assert r.names.count(b"cookie") == 1
    assert r.values[r.names.index(b"cookie")] == b"a=1; b=2"


def test_body_framing_towards_the_instance() -> None:
    r = parse_request([(b":method", b"POST"), *BASE[1:], (b"content-length", b"12")])
    assert b"Content-Length: 12\r\n" in upstream_head(r, b"p", b"http", has_body=True)[1]
    r = parse_request([(b":method", b"POST"), *BASE[1:]])
    assert b"Transfer-Encoding: chunked\r\n" in upstream_head(r, b"p", b"http", has_body=True)[1]


def test_forwarding_fields_from_the_client_are_extended_or_dropped() -> None:
    r = parse_request(
        [*BASE, (b"x-forwarded-for", b"203.0.113.9"), (b"via", b"1.1 edge"), (b"x-forwarded-proto", b"gopher"),
         (b"te", b"trailers"), (b"proxy-authorization", b"x")]
    )
    head = upstream_head(r, b"198.18.0.1", b"http", has_body=False)[1]
    assert b"X-Forwarded-For: 203.0.113.9, 198.18.0.1\r\n" in head
    assert b"Via: 1.1 edge, 2 tidegate\r\n" in head
    assert b"gopher" not in head and b"te:" not in head.lower() and b"proxy-" not in head.lower()


@pytest.mark.parametrize(
    "fields",
    [
        [*BASE, (b"connection", b"keep-alive")],
        [*BASE, (b"transfer-encoding", b"chunked")],
        [*BASE, (b"upgrade", b"websocket")],
        [*BASE, (b"keep-alive", b"5")],
        [*BASE, (b"te", b"gzip")],
        [*BASE, (b"X-Upper", b"1")],
        [*BASE, (b"x", b"a\r\nInjected: 1")],
        [*BASE, (b"x", b"a\x00")],
        [(b"x", b"1"), *BASE],  # a pseudo field after a regular one
        [*BASE, (b":path", b"/again")],
        [*BASE, (b":protocol", b"websocket")],
        [f for f in BASE if f[0] != b":path"],
        [f for f in BASE if f[0] != b":method"],
        [(b":method", b"CONNECT"), (b":authority", b"a:443")],
        [(b":method", b"GET"), (b":scheme", b"http"), (b":path", b"http://abs/")],
        [*BASE, (b"content-length", b"1"), (b"content-length", b"2")],
        [*BASE, (b"content-length", b"-1")],
        [*BASE, (b"host", b"a"), (b"host", b"b")],
    ],
)
def test_malformed_requests_are_refused(fields: list[tuple[bytes, bytes]]) -> None:
    with pytest.raises(Malformed):
        parse_request(fields)


def test_response_drops_connection_specific_fields() -> None:
    out = response_fields(
        200,
        [(b"Content-Type", b"text/plain"), (b"Connection", b"close, X-Hop"), (b"X-Hop", b"1"),
         (b"Keep-Alive", b"5"), (b"Transfer-Encoding", b"chunked"), (b"Upgrade", b"h2c"),
         (b"Proxy-Connection", b"x"), (b"Set-Cookie", b"a=1"), (b"Set-Cookie", b"b=2")],
    )
    assert out == [(b":status", b"200"), (b"content-type", b"text/plain"), (b"set-cookie", b"a=1"),
                   (b"set-cookie", b"b=2")]


_token = st.binary(min_size=1, max_size=8).map(lambda b: bytes(97 + (c % 26) for c in b))


@given(st.lists(st.tuples(_token, st.binary(max_size=12)), max_size=12))
def test_any_regular_fields_either_parse_or_are_malformed_never_reach_the_head_raw(
    extra: list[tuple[bytes, bytes]],
) -> None:
    try:
        r = parse_request([*BASE, *extra])
    except Malformed:
        return
    _, head = upstream_head(r, b"p", b"http", has_body=False)
    # One head, every line a field: nothing a value carried split it.
    assert head.count(b"\r\n\r\n") == 1 and head.endswith(b"\r\n\r\n")
