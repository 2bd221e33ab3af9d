"""Host field values the gateway forwards, and those it answers 400 (http/host.py)."""

from __future__ import annotations

import ipaddress

import pytest
from hypothesis import given
from hypothesis import strategies as st

from tidegate.http.host import valid_host

GOOD = [
    b"example.com",
    b"example.com:8080",
    b"EXAMPLE.com.",
    b"a-b_c~d.example",
    b"127.0.0.1",
    b"127.0.0.1:80",
    b"[::1]",
    b"[::1]:8443",
    b"[2001:db8::1]",
    b"[v1.fe80::a+en1]",
    b"xn--bcher-kva.example",
    b"%41bc.example",
    b"host:",  # an empty port is in the grammar (RFC 3986 port = *DIGIT)
    b"",  # an empty reg-name too
]

BAD = [
    b"user@example.com",
    b"user:pass@example.com",
    b"exa mple.com",
    b"example.com\t:80",
    b"example.com:80a",
    b"example.com:123456",
    b"example.com:80:81",
    b"exa/mple.com",
    b"exa\\mple.com",
    b"example.com#frag",
    b"example.com?q",
    b"[::1",
    b"[::1]x",
    b"[::g]",
    b"[127.0.0.1]",
    b"%4",
    b"%zz.example",
    b"ex\xc3\xa4mple.com",
    b"example.com\x00",
    b'"example.com"',
    b"<example.com>",
]


@pytest.mark.parametrize("value", GOOD)
def test_forwarded(value: bytes) -> None:
    assert valid_host(value)


@pytest.mark.parametrize("value", BAD)
def test_refused(value: bytes) -> None:
    assert not valid_host(value)


@given(st.ip_addresses(v=6), st.integers(0, 65535))
def test_every_ipv6_literal_with_a_port(ip: ipaddress.IPv6Address, port: int) -> None:
    assert valid_host(f"[{ip}]:{port}".encode())


label = st.text(alphabet="abcdefghijklmnopqrstuvwxyz0123456789-", min_size=1, max_size=20)


@given(st.lists(label, min_size=1, max_size=4).map(".".join), st.sampled_from(b'@ \t/\\#?<>"{}|^`\x00\x7f'))
def test_one_character_outside_the_grammar_is_enough(name: str, bad: int) -> None:
    assert valid_host(name.encode())
    assert not valid_host(name.encode() + bytes([bad]) + b"x")
