"""Queries with EDNS options (a DNS cookie, as dig sends by default) use the packet cache too.

tidegate does not implement server cookies, so it answers like a server without cookie support
(RFC 7873, RFC 6891 §6.1.2: an option not understood is ignored): the answer carries no
COOKIE option, whether it comes from the cache or from dnspython; a malformed cookie is FORMERR
from both. The weighted draw still happens per query."""

from __future__ import annotations

import os
import random
import shutil
import subprocess
from collections import Counter
from collections.abc import Callable

import dns.edns
import dns.message
import dns.query
import dns.rcode
import pytest

from tidegate.dns import handler
from tidegate.dns.packet_cache import plain_query
from tidegate.testing.dns_server import DnsServer

from .test_packet_cache import NAMES, TYPES, _mixed_case, _zone
from .test_server import CONFIG, addresses


def _option(rng: random.Random) -> list[dns.edns.Option]:
    roll = rng.random()
    client = rng.randbytes(8)
    if roll < 0.4:
        return [dns.edns.CookieOption(client, b"")]
    if roll < 0.6:
        return [dns.edns.CookieOption(client, rng.randbytes(rng.choice([8, 16, 32])))]
    if roll < 0.7:
        return [dns.edns.NSIDOption(b""), dns.edns.CookieOption(client, b"")]
    if roll < 0.8:  # malformed cookies: FORMERR (dnspython's parser refuses them)
        return [dns.edns.GenericOption(dns.edns.OptionType.COOKIE, rng.randbytes(rng.choice([0, 5, 12, 41])))]
    if roll < 0.9:
        return [dns.edns.GenericOption(dns.edns.OptionType.PADDING, bytes(rng.randrange(40)))]
    return [dns.edns.ECSOption("10.0.0.0", 8)]


def _query(rng: random.Random) -> bytes:
    q = dns.message.make_query(
        _mixed_case(rng.choice(NAMES), rng),
        rng.choice(TYPES),
        use_edns=0,
        payload=rng.choice([512, 1232, 4096]),
        want_dnssec=rng.random() < 0.3,
        id=rng.randrange(65536),
        options=_option(rng),
    )
    return q.to_wire()


def test_answers_to_queries_with_options_are_the_full_paths_bytes() -> None:
    cached, full = _zone(5), _zone(5)  # the same draws in the same order
    rng = random.Random(2)
    for i in range(6000):
        wire = _query(rng)
        transport = "tcp" if i % 7 == 0 else "udp"
        expected = handler._handle(wire, full, transport)  # the dnspython path, no cache
        assert handler.handle(wire, cached, transport) == expected, i
        if expected is not None and expected[3] & 0x0F == dns.rcode.NOERROR:
            assert not any(
                o.otype == dns.edns.OptionType.COOKIE for o in dns.message.from_wire(expected).options
            )
    assert cached.figures.cache_hits > 3000, cached.figures.cache_hits
    assert cached.figures.responses == full.figures.responses
    assert cached.figures.formerr == full.figures.formerr > 0


def test_cookie_queries_share_the_entries_of_plain_ones() -> None:
    zone = _zone(1)
    q = dns.message.make_query("one.example.test.", "A", use_edns=0)
    for _ in range(20):  # warm: the three answers of "one"
        handler.handle(q.to_wire(), zone)
    misses = zone.figures.cache_misses
    rng = random.Random(1)
    for _ in range(50):  # each with another client cookie, as from 50 clients
        c = dns.message.make_query(
            "one.example.test.", "A", use_edns=0, options=[dns.edns.CookieOption(rng.randbytes(8), b"")]
        )
        r = dns.message.from_wire(handler.handle(c.to_wire(), zone) or b"")
        assert r.rcode() == dns.rcode.NOERROR and len(addresses(r)) == 1 and r.options == ()
    assert zone.figures.cache_misses == misses


def test_the_draw_stays_per_query_with_cookies() -> None:
    zone = _zone(9)
    first: Counter[str] = Counter()
    rng = random.Random(4)
    n = 6000
    for _ in range(n):
        q = dns.message.make_query(
            "one.example.test.", "A", use_edns=0, options=[dns.edns.CookieOption(rng.randbytes(8), b"")]
        )
        (ip,) = addresses(dns.message.from_wire(handler.handle(q.to_wire(), zone) or b""))
        first[ip] += 1
    for ip, weight in (("127.0.0.1", 1), ("127.0.0.2", 2), ("127.0.0.3", 3)):
        assert abs(first[ip] / n - weight / 6) < 0.03, first
    assert zone.figures.cache_misses == 3 and zone.figures.cache_hits == n - 3


def test_which_options_take_the_fast_path() -> None:
    def wire(*options: dns.edns.Option) -> bytes:
        return dns.message.make_query("www.example.test.", "A", use_edns=0, options=list(options)).to_wire()

    cookie = dns.edns.CookieOption(b"c" * 8, b"")
    assert plain_query(wire(cookie)) is not None
    assert plain_query(wire(dns.edns.CookieOption(b"c" * 8, b"s" * 32))) is not None
    assert plain_query(wire(dns.edns.NSIDOption(b""), cookie)) is not None
    # the key leaves the options out: a cookie query and a plain one get the same entry
    assert plain_query(wire(cookie)) == plain_query(wire())
    for bad in (
        wire(dns.edns.GenericOption(dns.edns.OptionType.COOKIE, b"c" * 12)),  # FORMERR
        wire(dns.edns.GenericOption(dns.edns.OptionType.COOKIE, b"c" * 41)),
        wire(dns.edns.GenericOption(dns.edns.OptionType.PADDING, b"")),  # pads the answer
        wire(dns.edns.ECSOption("10.0.0.0", 8)),
        wire(dns.edns.NSIDOption(b"x")),
        wire(cookie)[:-1],  # an option cut short
        wire(cookie) + b"\x00",
    ):
        assert plain_query(bad) is None, bad


@pytest.mark.skipif(shutil.which("dig") is None, reason="needs dig (bind9-dnsutils)")
def test_dig_with_its_default_cookie_is_answered_from_the_cache(
    dns_server: Callable[[str], DnsServer],
) -> None:
    s = dns_server(CONFIG)
    figs = s.service.zone.figures

    def dig(*extra: str) -> str:
        out = subprocess.run(
            ["dig", f"@{s.host}", "-p", str(s.port), "+tries=1", "+time=5", *extra, "one.example.test.", "A"],
            capture_output=True,
            text=True,
            timeout=30,
            env={**os.environ, "HOME": "/nonexistent"},
            check=True,
        ).stdout
        assert "status: NOERROR" in out and "ANSWER: 1," in out, out
        return out

    out = dig()
    assert "COOKIE" not in out.split("ANSWER SECTION")[0].split("OPT PSEUDOSECTION")[1], out
    for _ in range(10):
        dig()
    dig("+nocookie")
    # three possible answers: at most three misses, however many of the 12 queries carried a cookie
    assert figs.cache_misses <= 3 and figs.cache_hits >= 9, (figs.cache_hits, figs.cache_misses)


def test_a_padded_query_whose_padding_would_not_fit_gets_its_answer_unpadded() -> None:
    # dnspython pads in 468-byte blocks: an answer between 936 and 1232 bytes padded would pass
    # the UDP limit; it raised TooBig, answered SERVFAIL (RFC 7830 §4: pad unless that passes it).
    zone = _zone(1)
    padding = dns.edns.GenericOption(dns.edns.OptionType.PADDING, b"")
    q = dns.message.make_query("big.deep.example.test.", "A", use_edns=0, payload=1232, options=[padding])
    r = dns.message.from_wire(handler.handle(q.to_wire(), zone) or b"")
    assert r.rcode() == dns.rcode.NOERROR and zone.figures.internal_errors == 0
    assert len(addresses(r)) > 0
