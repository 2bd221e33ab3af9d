"""The PROXY header as a real receiver reads it: HAProxy with `accept-proxy` (v1 and v2) answers
each request with the client address it was told."""

from __future__ import annotations

import shutil
import socket
import time
from collections.abc import Iterator
from pathlib import Path

import pytest

from tidegate.testing.process import Proc

pytestmark = pytest.mark.skipif(shutil.which("haproxy") is None, reason="haproxy not installed")


def wait_port(port: int, proc: Proc, timeout: float = 10) -> None:
    deadline = time.monotonic() + timeout
    while time.monotonic() < deadline:
        try:
            socket.create_connection(("127.0.0.1", port), timeout=1).close()
            return
        except OSError:
            if proc.popen.poll() is not None:
                raise AssertionError("haproxy exited:\n" + proc.output()) from None
            time.sleep(0.02)  # waiting for a port to open: there is no other signal
    raise AssertionError("haproxy did not listen:\n" + proc.output())


@pytest.fixture
def haproxy_who_am_i(tmp_path: Path) -> Iterator[str]:
    """HAProxy expecting a PROXY header, answering `SRC SRC_PORT DST DST_PORT` as it understood."""
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        port = s.getsockname()[1]
    cfg = tmp_path / "haproxy.cfg"
    cfg.write_text(
        f"""
defaults
    mode http
    timeout connect 5s
    timeout client 10s
    timeout server 10s
frontend who
    bind 127.0.0.1:{port} accept-proxy
    http-request return status 200 content-type text/plain lf-string "%[src] %[src_port] %[dst] %[dst_port]"
"""
    )
    proc = Proc(["haproxy", "-db", "-f", str(cfg)])
    try:
        wait_port(port, proc)
        yield f"127.0.0.1:{port}"
    finally:
        proc.stop()


@pytest.mark.parametrize("version", ["v1", "v2"])
async def test_haproxy_sees_the_client_address(proxy, client, haproxy_who_am_i: str, version: str) -> None:
    svc = await proxy([haproxy_who_am_i], proxy_protocol=version)
    c = await client(svc.address)
    c.writer.write(b"GET / HTTP/1.1\r\nHost: x\r\nConnection: close\r\n\r\n")
    response = await c.to_end()
    head, _, body = response.partition(b"\r\n\r\n")
    assert head.startswith(b"HTTP/1.1 200"), response
    client_host, client_port = c.writer.get_extra_info("sockname")[:2]
    listen_host, _, listen_port = svc.address.rpartition(":")
    assert body.decode().split() == [client_host, str(client_port), listen_host, listen_port]
