"""100,000 random and mutated packets: none raises out of the handler, every answer is a proper
response to the packet it answers, and valid queries keep getting correct answers, both fed to
the handler directly (the bulk, for speed) and through the server's sockets."""

from __future__ import annotations

import socket
from collections.abc import Callable

import dns.flags
import dns.message
import dns.query
import dns.rcode

from tidegate.config.load import parse_config
from tidegate.control.runtime.pools import build_pools
from tidegate.dns.handler import handle
from tidegate.dns.zone import Zone
from tidegate.testing.dns_server import DnsServer

from .fuzz_packets import packets

CONFIG = """
[[pools]]
name = "web"
instances = [{ address = "127.0.0.1:9001" }, { address = "127.0.0.2:9001" }, { address = "[::1]:9001" }]

[dns]
listen = "127.0.0.1:0"
zone = "example.test."
nameservers = ["ns1.example.test."]

[[dns.records]]
name = "www.example.test."
pool = "web"
answers = 2

[[dns.records]]
name = "one.example.test."
pool = "web"
answers = 1
"""
V4 = {"127.0.0.1", "127.0.0.2"}


def _check_valid_answer(wire: bytes | None) -> None:
    assert wire is not None
    r = dns.message.from_wire(wire)
    assert r.rcode() == dns.rcode.NOERROR
    got = {rd.address for rrset in r.answer for rd in rrset}
    assert len(got) == 2 and got <= V4


def test_hundred_thousand_packets_through_the_handler() -> None:
    cfg = parse_config(CONFIG)
    assert cfg.dns is not None
    zone = Zone(cfg.dns, build_pools(cfg))
    valid = dns.message.make_query("www.example.test.", "A").to_wire()
    answered = 0
    for i, pkt in enumerate(packets(seed=7, n=100_000)):
        for transport in ("udp", "tcp") if i % 20 == 0 else ("udp",):
            out = handle(pkt, zone, transport)  # type: ignore[arg-type]
            if out is None:
                assert len(pkt) < 12 or pkt[2] & 0x80
                continue
            answered += 1
            assert out[:2] == pkt[:2]  # the id
            assert out[2] & 0x80  # QR
            assert len(out) <= (65535 if transport == "tcp" else 1232)
            if i % 8 == 0:
                dns.message.from_wire(out)  # well formed (a sample: parsing doubles the cost)
        if i % 1000 == 0:
            _check_valid_answer(handle(valid, zone))
    figs = zone.figures
    assert figs.internal_errors == 0
    # The corpus reaches every branch: drops, FORMERR, and proper answers of several kinds.
    assert figs.dropped > 1000 and figs.formerr > 10_000 and answered > 50_000
    assert {"NOERROR", "NXDOMAIN", "REFUSED", "FORMERR", "NOTIMP"} <= set(figs.responses)
    # Both paths took their share: the packet cache and dnspython's.
    assert figs.cache_hits > 1000 and figs.cache_misses > 1000


def test_the_server_keeps_answering_after_garbage(dns_server: Callable[[str], DnsServer]) -> None:
    s = dns_server(CONFIG)
    corpus = list(packets(seed=11, n=3000))
    valid = dns.message.make_query("www.example.test.", "A")
    with socket.socket(socket.AF_INET, socket.SOCK_DGRAM) as sock:
        # In chunks small enough for the socket's receive buffer, each followed by a valid query:
        # its answer comes after the server has read every packet before it.
        for start in range(0, len(corpus), 50):
            for pkt in corpus[start : start + 50]:
                sock.sendto(pkt, (s.host, s.port))
            _check_valid_answer(dns.query.udp(valid, s.host, port=s.port, timeout=5).to_wire())
    assert s.service.figures.udp == len(corpus) + len(corpus) // 50
    # TCP: whole frames of garbage, frames cut short, a zero length, and a close mid-frame.
    for chunk in range(0, 600, 100):
        with socket.create_connection((s.host, s.port), timeout=5) as conn:
            for pkt in corpus[chunk : chunk + 100]:
                if not pkt:
                    continue  # a zero length ends the connection: tried on its own below
                conn.sendall(len(pkt).to_bytes(2, "big") + pkt)
            conn.sendall(b"\x01\x00abc")  # announces 256 bytes, sends 3, then closes
    with socket.create_connection((s.host, s.port), timeout=5) as conn:
        conn.sendall(b"\x00\x00")
        assert conn.recv(10) == b""  # a zero-length frame ends the connection
    for _ in range(20):
        r = dns.query.udp(dns.message.make_query("www.example.test.", "A"), s.host, port=s.port, timeout=5)
        _check_valid_answer(r.to_wire())
        r = dns.query.tcp(dns.message.make_query("www.example.test.", "A"), s.host, port=s.port, timeout=5)
        _check_valid_answer(r.to_wire())
    figs = s.service.figures
    assert figs.internal_errors == 0 and figs.formerr > 100
