"""The raw-socket response reader keeps what follows a response for the next read: two answers
written at once (a pipelined pair, or a 1xx before the final one) are read as two, each with
exactly its own body (llhttp, fed both, goes on into the second)."""

from __future__ import annotations

import socket

import pytest

from tidegate.testing.wire import ResponseReader

FIRST = b"HTTP/1.1 200 OK\r\nContent-Length: 5\r\n\r\nfirst"
CHUNKED = b"HTTP/1.1 200 OK\r\nTransfer-Encoding: chunked\r\n\r\n5\r\nfirst\r\n0\r\n\r\n"
SECOND = b"HTTP/1.1 404 Not Found\r\nContent-Length: 1\r\nX-Second: yes\r\n\r\na"


@pytest.mark.parametrize("first", [FIRST, CHUNKED], ids=["length", "chunked"])
def test_two_responses_in_one_write_are_read_as_two(first: bytes) -> None:
    a, b = socket.socketpair()
    with a, b:
        a.sendall(first + SECOND)
        reader = ResponseReader(b)
        r1 = reader.read()
        assert (r1.status, bytes(r1.body), r1.header("x-second")) == (200, b"first", None)
        r2 = reader.read()
        assert (r2.status, bytes(r2.body), r2.header("x-second")) == (404, b"a", "yes")


def test_a_head_answer_and_an_interim_one_leave_the_next_response_whole() -> None:
    a, b = socket.socketpair()
    with a, b:
        a.sendall(b"HTTP/1.1 100 Continue\r\n\r\n" + FIRST + b"HTTP/1.1 200 OK\r\nContent-Length: 9\r\n\r\n" + SECOND)
        reader = ResponseReader(b)
        assert reader.read().status == 100
        assert bytes(reader.read().body) == b"first"
        head = reader.read(head_request=True)
        assert head.status == 200 and head.header("content-length") == "9" and not head.body
        assert bytes(reader.read().body) == b"a"
