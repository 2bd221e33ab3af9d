"""DNS-over-TCP max_connections: at the limit the TCP listener pauses; a client beyond it waits in
the kernel's backlog and is answered once a connection closes."""

from __future__ import annotations

import socket
import struct

import dns.message
import pytest

from tidegate.testing.dns_server import DnsServer

CONFIG = """
[[pools]]
name = "web"
instances = [{ address = "127.0.0.1:9001" }]

[dns]
listen = "127.0.0.1:0"
zone = "example.test."
nameservers = ["ns1.example.test."]
max_connections = 2

[[dns.records]]
name = "www.example.test."
pool = "web"
"""


def _query(s: socket.socket) -> None:
    wire = dns.message.make_query("www.example.test.", "A").to_wire()
    s.sendall(struct.pack("!H", len(wire)) + wire)


def _answer(s: socket.socket) -> dns.message.Message:
    size = struct.unpack("!H", s.recv(2, socket.MSG_WAITALL))[0]
    return dns.message.from_wire(s.recv(size, socket.MSG_WAITALL))


def test_a_client_beyond_max_connections_waits_then_is_answered(dns_server) -> None:
    s: DnsServer = dns_server(CONFIG)
    held = []
    try:
        for _ in range(2):
            c = socket.create_connection((s.host, s.port), timeout=10)
            _query(c)
            assert _answer(c).answer
            held.append(c)
        with socket.create_connection((s.host, s.port), timeout=10) as late:  # the backlog took it
            _query(late)
            late.settimeout(0.5)
            with pytest.raises(TimeoutError):
                late.recv(1)  # not accepted yet: nothing answers (a reset or close would return)
            held.pop().close()
            late.settimeout(10)
            assert _answer(late).answer
        gate = s.service.gate
        assert gate is not None
        assert s.call(lambda: gate.figures.pauses["max_connections"]) >= 1
    finally:
        for c in held:
            c.close()
