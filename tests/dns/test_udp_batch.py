"""The batched UDP socket (recvmmsg/sendmmsg): each client gets its own answer from one batch, a
datagram without an answer or too long to read whole gets none and leaves the others theirs, and
an answer too big for a send slot still goes out. Real sockets; the batch is read by calling the
readiness callback once every datagram is queued, so it is one batch for certain."""

from __future__ import annotations

import socket

import pytest

from tidegate.dns import udp_batch
from tidegate.dns.figures import Figures
from tidegate.dns.udp_batch import BATCH, RECV_SLOT, SEND_SLOT, BatchUdp

pytestmark = pytest.mark.skipif(not udp_batch.available(), reason="recvmmsg is Linux's")


def answer(wire: bytes) -> bytes | None:
    if wire.startswith(b"drop"):
        return None
    if wire.startswith(b"big"):
        return b"B" * (SEND_SLOT + 100)
    return b"re:" + wire


def _has_ipv6() -> bool:
    try:
        with socket.socket(socket.AF_INET6, socket.SOCK_DGRAM) as s:
            s.bind(("::1", 0))
        return True
    except OSError:
        return False


@pytest.mark.parametrize(
    "host", ["127.0.0.1", pytest.param("::1", marks=pytest.mark.skipif(not _has_ipv6(), reason="no ::1"))]
)
def test_one_batch_answers_every_client_its_own(host: str) -> None:
    family = socket.AF_INET6 if ":" in host else socket.AF_INET
    server = socket.socket(family, socket.SOCK_DGRAM)
    server.bind((host, 0))
    server.setsockopt(socket.SOL_SOCKET, socket.SO_RCVBUF, 1 << 20)
    figures = Figures()
    batch = BatchUdp(server, answer, figures)
    clients = [socket.socket(family, socket.SOCK_DGRAM) for _ in range(BATCH + 6)]
    try:
        sent: dict[int, bytes] = {}
        for i, c in enumerate(clients):
            c.bind((host, 0))
            if i == 5:
                msg = b"drop me"
            elif i == 9:
                msg = b"x" * (RECV_SLOT + 1)  # cut short by the slot: must not be answered
            elif i == 12:
                msg = b"big one"
            else:
                msg = f"query {i}".encode()
            c.sendto(msg, server.getsockname())
            sent[i] = msg
        batch._readable()  # the first batch fills every slot, the next one reads the rest
        for i, c in enumerate(clients):
            c.setblocking(False)
            if i in (5, 9):
                with pytest.raises(BlockingIOError):
                    c.recv(65535)
            elif i == 12:
                assert c.recv(65535) == b"B" * (SEND_SLOT + 100)
            else:
                assert c.recvfrom(65535) == (b"re:" + sent[i], server.getsockname())
        assert batch.dropped == 1  # the one cut short; "drop me" had no answer to drop
        assert figures.dropped == 1  # and /metrics says so (tidegate_dns_dropped_total)
    finally:
        for c in clients:
            c.close()
        server.close()
