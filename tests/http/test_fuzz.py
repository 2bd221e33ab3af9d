"""Mutated requests by the hundred: every one gets a complete answer or a close, the gateway
keeps serving, and nothing it rejected reaches the instance."""

from __future__ import annotations

import random
import socket

from tidegate.testing.gateway import gateway_config as config
from tidegate.testing.wire import parse_all

SEEDS = [
    b"GET /a?x=1 HTTP/1.1\r\nHost: t\r\nUser-Agent: fuzz\r\nConnection: close\r\n\r\n",
    b"POST /b HTTP/1.1\r\nHost: t\r\nContent-Length: 5\r\nConnection: close\r\n\r\nhello",
    b"POST /c HTTP/1.1\r\nHost: t\r\nTransfer-Encoding: chunked\r\nConnection: close\r\n\r\n5\r\nhello\r\n0\r\n\r\n",
    b"GET /d HTTP/1.0\r\n\r\n",
]
NASTY = [
    b"\r",
    b"\n",
    b"\x00",
    b":",
    b" ",
    b"\t",
    b",",
    b"-",
    b"0",
    b"9",
    b"\xff",
    b"chunked",
    b"Content-Length: 3\r\n",
]


def mutate(rng: random.Random, data: bytes) -> bytes:
    b = bytearray(data)
    for _ in range(rng.randint(1, 3)):
        op = rng.randrange(4)
        i = rng.randrange(len(b) + 1)
        if op == 0 and b:
            del b[min(i, len(b) - 1)]
        elif op == 1:
            b[i:i] = rng.choice(NASTY)
        elif op == 2 and b:
            j = min(i, len(b) - 1)
            b[j] = rng.randrange(256)
        else:
            line = rng.choice([b"Host: u\r\n", b"Content-Length: 5\r\n", b"Transfer-Encoding: chunked\r\n"])
            head_end = b.find(b"\r\n") + 2 if b.find(b"\r\n") >= 0 else len(b)
            b[head_end:head_end] = line
    return bytes(b)


def test_mutated_requests(faults, gateway) -> None:
    inst = faults("echo")
    gw = gateway(
        config([inst.address], limits={"client_header_timeout": "300ms", "upstream_response_timeout": "1s"})
    )
    rng = random.Random(20261125)
    statuses: list[int | None] = []
    for n in range(300):
        raw = mutate(rng, SEEDS[n % len(SEEDS)])
        with socket.create_connection((gw.host, gw.port), timeout=5) as s:
            s.sendall(raw)
            s.shutdown(socket.SHUT_WR)  # what was sent is all there is
            chunks = []
            while data := s.recv(65536):
                chunks.append(data)
        answers = parse_all(b"".join(chunks))
        for r in answers:
            assert r.complete and 100 <= r.status <= 599
        statuses.extend(r.status for r in answers)
        if not answers:
            statuses.append(None)
    # some mutations stay valid (forwarded), most are rejected; all were answered or closed
    assert any(s == 200 for s in statuses) and any(s is not None and 400 <= s < 500 for s in statuses)
    forwarded = sum(1 for s in statuses if s is not None and s < 400)
    assert len(inst.seen) == forwarded  # each answered one reached it, nothing rejected did
    # the gateway is still well
    with socket.create_connection((gw.host, gw.port), timeout=5) as s:
        s.sendall(b"GET /ok HTTP/1.1\r\nHost: t\r\nConnection: close\r\n\r\n")
        chunks = []
        while data := s.recv(65536):
            chunks.append(data)
    assert [r.status for r in parse_all(b"".join(chunks))] == [200]

    # and holds nothing for them: every connection was answered and closed or is closing
    def open_exchanges() -> int:
        return sum(len(c.queue) for c in gw.service.conns)

    assert gw.call(open_exchanges) == 0
