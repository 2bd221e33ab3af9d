"""The gateway's own Content-Length + Transfer-Encoding rejection (client.py), reached directly.

llhttp refuses such a head first, so no request over a socket ever gets to this check; it is the
gateway's own guard should the parser's strictness change. The callbacks are driven here as
llhttp drives them, with a real parser that has read the request line (for method and version).
"""

from __future__ import annotations

import asyncio

import httptools
import pytest

from tidegate.config.model import Config
from tidegate.control.runtime.pools import build_pools
from tidegate.http import client
from tidegate.http.service import HttpService
from tidegate.http.upstream import Upstreams
from tidegate.service import StandaloneHost


class _Quiet:
    pass


def _connection(loop: asyncio.AbstractEventLoop, request_line: bytes) -> client.ClientConnection:
    cfg = Config.model_validate(
        {
            "pools": [{"name": "p", "instances": [{"address": "127.0.0.1:9"}]}],
            "http": [{"listen": "127.0.0.1:0", "pool": "p"}],
        }
    )
    svc = HttpService(cfg.http[0], StandaloneHost(cfg, build_pools(cfg)))
    svc.loop = loop
    svc.upstreams = Upstreams(loop)  # as start() sets it: the compiled class takes no None there
    conn = client.ClientConnection(svc)
    parser = httptools.HttpRequestParser(_Quiet())
    parser.feed_data(request_line)  # the head not finished: method and version known
    conn.parser = parser
    return conn


@pytest.mark.parametrize(
    ("fields", "version"),
    [
        ([(b"Content-Length", b"4"), (b"Transfer-Encoding", b"chunked")], b"HTTP/1.1"),
        ([(b"Transfer-Encoding", b"chunked"), (b"Content-Length", b"4")], b"HTTP/1.1"),
        ([(b"Transfer-Encoding", b"chunked"), (b"Content-Length", b"0")], b"HTTP/1.1"),
        ([(b"Transfer-Encoding", b"chunked")], b"HTTP/1.0"),
    ],
)
def test_content_length_with_transfer_encoding_is_400_before_an_exchange(
    fields: list[tuple[bytes, bytes]], version: bytes
) -> None:
    loop = asyncio.new_event_loop()
    try:
        conn = _connection(loop, b"POST /smuggle " + version + b"\r\nHost: t\r\n")
        conn.on_message_begin()
        conn.on_url(b"/smuggle")
        conn.on_header(b"Host", b"t")
        for name, value in fields:
            conn.on_header(name, value)
        with pytest.raises(client._Reject):
            conn.on_headers_complete()
        assert conn.reject == 400
        assert not conn.queue and conn.cur is None  # nothing that could reach an instance
    finally:
        loop.close()


def test_past_the_check_a_head_meets_the_next_one() -> None:
    """The harness itself: without Transfer-Encoding the head gets past the framing check to the
    body limit (413), so the test above can fail."""
    loop = asyncio.new_event_loop()
    try:
        conn = _connection(loop, b"POST /big HTTP/1.1\r\nHost: t\r\n")
        conn.on_message_begin()
        conn.on_url(b"/big")
        conn.on_header(b"Host", b"t")
        conn.on_header(b"Content-Length", b"99999999999")
        with pytest.raises(client._Reject):
            conn.on_headers_complete()
        assert conn.reject == 413
    finally:
        loop.close()
