"""A gateway started with a low soft RLIMIT_NOFILE (systemd's common 1,024, here 200) raises it to
the hard limit, says so, and serves more concurrent clients than the low limit would let it open."""

from __future__ import annotations

import http.client
import resource
import socket
import sys
from collections.abc import Iterator
from contextlib import ExitStack
from pathlib import Path

import pytest

from tidegate.testing.process import Proc, child_env

IDLE = 400  # kept-alive client connections: each also holds one to the instance while busy


@pytest.fixture
def backend() -> Iterator[Proc]:
    proc = Proc([sys.executable, "-m", "tidegate.testing.backends", "a"], env=child_env())
    proc.wait_for(r"tidegate: backend listening on")
    yield proc
    proc.stop()


def test_a_low_soft_limit_is_raised_and_more_clients_than_it_fit_are_served(
    tmp_path: Path, backend: Proc
) -> None:
    soft, hard = resource.getrlimit(resource.RLIMIT_NOFILE)
    if hard != resource.RLIM_INFINITY and hard < 4 * IDLE:
        pytest.skip(f"the hard limit ({hard}) leaves no room above the low soft one")
    if soft != resource.RLIM_INFINITY and soft < 2 * IDLE:
        resource.setrlimit(resource.RLIMIT_NOFILE, (min(4 * IDLE, hard), hard))  # this process holds IDLE too
    host, port = backend.address("backend")
    cfg = tmp_path / "tidegate.toml"
    cfg.write_text(
        f'[[pools]]\nname = "web"\ninstances = [{{ address = "{host}:{port}" }}]\n'
        '[[http]]\nlisten = "127.0.0.1:0"\npool = "web"\n'
    )
    argv = ["prlimit", "--nofile=200:4096", "--", sys.executable, "-m", "tidegate", "run", str(cfg)]
    gw = Proc(argv, env=child_env())
    try:
        gw.wait_for(r"tidegate: ready")
        assert (
            gw.wait_for(r"open files: (\d+) \(soft limit raised from 200 to the hard limit\)").group(1)
            == "4096"
        )
        ghost, gport = gw.address("http")
        with ExitStack() as stack:
            idle = []
            for _ in range(IDLE):
                c = http.client.HTTPConnection(ghost, gport, timeout=30)
                stack.callback(c.close)
                c.request("GET", "/")  # the connection stays open, kept alive, both sides
                r = c.getresponse()
                assert r.status == 200
                r.read()
                idle.append(c)
            # with all of them open, a new client is still served
            with socket.create_connection((ghost, gport), timeout=30) as s:
                s.sendall(b"GET / HTTP/1.1\r\nHost: t\r\nConnection: close\r\n\r\n")
                assert s.recv(12) == b"HTTP/1.1 200"
            for c in idle[:: IDLE // 10]:  # and the idle ones are still usable
                c.request("GET", "/")
                assert c.getresponse().status == 200
    finally:
        gw.stop()
