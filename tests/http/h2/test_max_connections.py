"""HTTP/2 connections, and connections not yet told apart from HTTP/1.1 ones, count toward a
listener's max_connections: at the limit the listener pauses, and a client beyond it waits in the
kernel's backlog until one of them closes (as tests/http/test_hostile.py checks for HTTP/1.1)."""

from __future__ import annotations

import socket

import pytest

from tidegate.testing.gateway import gateway_config as config
from tidegate.testing.h2client import H2Client
from tidegate.testing.wait import until
from tidegate.testing.wire import ResponseReader


def _assert_waits_in_the_backlog(gw, inst) -> socket.socket:  # type: ignore[no-untyped-def]
    late = socket.create_connection((gw.host, gw.port), timeout=10)
    try:
        late.sendall(b"GET /late HTTP/1.1\r\nHost: t\r\n\r\n")
        late.settimeout(0.5)
        with pytest.raises(TimeoutError):
            late.recv(1)  # not accepted yet: nothing answers (a reset or close would return)
        assert "/late" not in [s.path for s in inst.seen]
    except BaseException:
        late.close()
        raise
    return late


def test_http2_connections_count_toward_max_connections(faults, gateway) -> None:
    inst = faults("echo")
    gw = gateway(config([inst.address], http={"max_connections": 3, "http2": True}))
    held = [H2Client(gw.host, gw.port) for _ in range(3)]
    try:
        for c in held:
            assert c.request("GET", "/held").status == 200
        with _assert_waits_in_the_backlog(gw, inst) as late:
            held.pop().close()
            late.settimeout(10)
            assert ResponseReader(late).read().status == 200
        assert gw.call(lambda: gw.service.gate.figures.pauses["max_connections"]) >= 1
    finally:
        for c in held:
            c.close()


def test_connections_that_sent_nothing_yet_count_too(faults, gateway) -> None:
    """On an `http2 = true` listener a new connection is only sniffed until its first bytes: a
    client that connects and says nothing still holds a place."""
    inst = faults("echo")
    gw = gateway(config([inst.address], http={"max_connections": 2, "http2": True}))
    quiet = []
    try:
        for n in (1, 2):
            quiet.append(socket.create_connection((gw.host, gw.port), timeout=10))
            until(lambda n=n: gw.call(lambda: len(gw.service.conns)) == n)
        with _assert_waits_in_the_backlog(gw, inst) as late:
            quiet.pop().close()
            late.settimeout(10)
            assert ResponseReader(late).read().status == 200
    finally:
        for s in quiet:
            s.close()
