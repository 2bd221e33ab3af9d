"""A gateway started with a low soft RLIMIT_NOFILE (systemd's common 1,024, here 200) raises it to
the hard limit, says so, and serves more concurrent clients than the low limit would let it open."""

from __future__ import annotations

import http.client
import re
import resource
import socket
import sys
import time
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


LOW = 160  # soft and hard: the gateway cannot raise it


def _metric(text: str, name: str, **labels: str) -> float:
    total = 0.0
    for m in re.finditer(rf"^{name}\{{([^}}]*)\}} (\S+)$", text, re.M):
        got = dict(re.findall(r'(\w+)="([^"]*)"', m.group(1)))
        if all(got.get(k) == v for k, v in labels.items()):
            total += float(m.group(2))
    return total


def test_at_the_open_files_limit_the_listener_pauses_and_drops_no_client(tmp_path: Path, backend: Proc) -> None:
    """With descriptors nearly gone (a hard limit it cannot raise, and max_connections set above
    what it allows), the listener stops accepting before accept() fails: every client it took is
    answered, the next waits in the backlog (libuv would accept and close it unanswered), the
    pause is counted and logged at most once a second, and once the idle clients close the
    waiting one and new ones are served."""
    host, port = backend.address("backend")
    cfg = tmp_path / "tidegate.toml"
    cfg.write_text(
        '[admin]\nlisten = "127.0.0.1:0"\n'
        f'[[pools]]\nname = "web"\ninstances = [{{ address = "{host}:{port}" }}]\n'
        '[[http]]\nlisten = "127.0.0.1:0"\npool = "web"\nmax_connections = 100000\n'
    )
    argv = ["prlimit", f"--nofile={LOW}:{LOW}", "--", sys.executable, "-m", "tidegate", "run", str(cfg)]
    gw = Proc(argv, env=child_env())
    try:
        gw.wait_for(r"tidegate: ready")
        gw.wait_for(rf"open files: {LOW} \(the soft limit; the hard limit allows no more\)")
        ghost, gport = gw.address("http")
        admin = gw.address("admin")
        started = time.monotonic()
        with ExitStack() as stack:
            idle: list[socket.socket] = []
            waiting = None
            for i in range(LOW):
                s = stack.enter_context(socket.create_connection((ghost, gport), timeout=30))
                s.sendall(b"GET /idle%d HTTP/1.1\r\nHost: t\r\n\r\n" % i)
                s.settimeout(3)  # the guard retries every second: three pass without a free descriptor
                try:
                    head = s.recv(12, socket.MSG_WAITALL)
                except TimeoutError:
                    waiting = s
                    break
                assert head == b"HTTP/1.1 200", (i, head)  # never closed unanswered (b"") nor reset
                idle.append(s)
            assert waiting is not None, "the descriptors never ran out"
            assert len(idle) > 20  # it served until near the limit, not stopping early
            metrics = http.client.HTTPConnection(*admin, timeout=10)
            metrics.request("GET", "/metrics")
            text = metrics.getresponse().read().decode()
            metrics.close()
            assert _metric(text, "tidegate_accept_pauses_total", listener="http", reason="open_files") >= 1
            assert _metric(text, "tidegate_accept_errors_total", listener="http") == 0
            for s in idle:
                s.close()
            waiting.settimeout(30)
            assert waiting.recv(12, socket.MSG_WAITALL) == b"HTTP/1.1 200"
        lines = [ln for ln in gw.lines if "near its open-files limit" in ln]
        assert 1 <= len(lines) <= time.monotonic() - started + 1
        with socket.create_connection((ghost, gport), timeout=30) as s:
            s.sendall(b"GET / HTTP/1.1\r\nHost: t\r\nConnection: close\r\n\r\n")
            assert s.recv(12, socket.MSG_WAITALL) == b"HTTP/1.1 200"
    finally:
        gw.stop()
