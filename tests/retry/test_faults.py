"""The fault-injecting instances do what they promise, seen from a plain client."""

from __future__ import annotations

import contextlib
import hashlib
import http.client
import json
import signal
import socket
import sys
from collections.abc import Iterator

import pytest

from tidegate.testing.faults import FaultInstance, Mode
from tidegate.testing.process import Proc

_open: list[http.client.HTTPConnection] = []


@pytest.fixture(autouse=True)
def _close_clients() -> Iterator[None]:
    yield
    while _open:
        _open.pop().close()


def conn(inst: FaultInstance, timeout: float = 5.0) -> http.client.HTTPConnection:
    c = http.client.HTTPConnection(inst.host, inst.port, timeout=timeout)
    _open.append(c)
    return c


def refused(inst: FaultInstance) -> bool:
    try:
        socket.create_connection((inst.host, inst.port), timeout=2).close()
    except ConnectionRefusedError:
        return True
    return False


def test_echo_answers_with_the_body_checksum_and_keeps_alive() -> None:
    with FaultInstance(name="a") as a:
        c = conn(a)
        for i, body in enumerate([b"", b"x" * 100_000]):
            c.request("POST", "/p?q=1", body=body, headers={"X-Request-Id": str(i)})
            r = c.getresponse()
            got = json.loads(r.read())
            assert r.status == 200 and r.getheader("X-Instance") == "a"
            assert got["sha256"] == hashlib.sha256(body).hexdigest() and got["bytes"] == len(body)
            assert got["path"] == "/p" and got["request_id"] == str(i)
        c.request("HEAD", "/")
        r = c.getresponse()
        assert r.status == 200 and r.read() == b""
        assert [(s.connection, s.index_on_connection) for s in a.seen] == [(1, 0), (1, 1), (1, 2)]
        assert all(s.answered for s in a.seen)


def test_refuses_then_accepts_then_refuses_again() -> None:
    inst = FaultInstance(listen=False)
    assert refused(inst)
    inst.listen()
    c = conn(inst)
    c.request("GET", "/")
    assert c.getresponse().status == 200
    inst.close()
    assert refused(inst)


def test_close_without_answering() -> None:
    with FaultInstance(Mode.CLOSE) as f:
        c = conn(f)
        c.request("POST", "/", body=b"abc")
        with pytest.raises(http.client.RemoteDisconnected):
            c.getresponse()
        assert [(s.method, s.body_bytes, s.answered) for s in f.seen] == [("POST", 3, False)]


def test_reset_mid_response() -> None:
    with FaultInstance(Mode.RESET) as f:
        c = conn(f)
        c.request("GET", "/")
        r = c.getresponse()
        assert r.status == 200  # the head arrived...
        with pytest.raises((ConnectionResetError, http.client.IncompleteRead)):
            r.read()  # ...the body is cut by a reset


def test_drain_signal() -> None:
    with FaultInstance(Mode.DRAIN) as f:
        c = conn(f)
        c.request("POST", "/", body=b"x" * 500_000)
        r = c.getresponse()
        assert r.status == 503
        assert r.getheader("Tidegate-Draining") == "1" and r.getheader("Connection") == "close"
        r.read()


def test_slow() -> None:
    with FaultInstance(Mode.SLOW) as f:
        c = conn(f, timeout=0.3)
        c.request("GET", "/")
        with pytest.raises(TimeoutError):
            c.getresponse()
    with FaultInstance(Mode.SLOW, delay=0.05) as f:
        c = conn(f)
        c.request("GET", "/")
        assert c.getresponse().status == 200


def test_keepalive_close_answers_once_per_connection() -> None:
    with FaultInstance(Mode.KEEPALIVE_CLOSE) as f:
        c = conn(f)
        c.request("GET", "/1")
        r = c.getresponse()
        assert r.status == 200 and r.getheader("Connection") is None
        r.read()
        c.request("GET", "/2")
        with pytest.raises(http.client.RemoteDisconnected):
            c.getresponse()
        assert [(s.path, s.index_on_connection, s.answered) for s in f.seen] == [
            ("/1", 0, True),
            ("/2", 1, False),
        ]


def test_mode_can_change_while_running() -> None:
    with FaultInstance() as f:
        f.mode = Mode.DRAIN
        c = conn(f)
        c.request("GET", "/")
        assert c.getresponse().status == 503


def test_as_a_process_that_can_be_killed() -> None:
    p = Proc([sys.executable, "-m", "tidegate.testing.faults", "echo", "--name", "k", "--log-requests"])
    try:
        p.wait_for(r"tidegate: fault listening on")
        host, port = p.address("fault")
        c = http.client.HTTPConnection(host, port, timeout=5)
        _open.append(c)
        c.request("GET", "/x", headers={"X-Request-Id": "7"})
        assert json.loads(c.getresponse().read())["instance"] == "k"
        p.wait_for(r"fault: k got GET /x id=7")
        p.signal(signal.SIGKILL)
        assert p.popen.wait(5) == -signal.SIGKILL
    finally:
        p.stop()


def test_blackhole_times_out_connecting() -> None:
    with FaultInstance(Mode.BLACKHOLE) as f:
        s = socket.socket()
        s.settimeout(0.2)
        with pytest.raises(TimeoutError):
            s.connect((f.host, f.port))
        s.close()


def test_status() -> None:
    with FaultInstance(Mode.STATUS, status=502) as f:
        c = conn(f)
        for _ in range(2):
            c.request("GET", "/")
            r = c.getresponse()
            assert r.status == 502 and r.getheader("Tidegate-Draining") is None
            r.read()
        assert [s.connection for s in f.seen] == [1, 1]


def test_close_mid_upload() -> None:
    with FaultInstance(Mode.CLOSE, close_after=100_000) as f:
        s = socket.create_connection((f.host, f.port))
        s.sendall(b"PUT /u HTTP/1.1\r\nHost: t\r\nContent-Length: 1000000\r\n\r\n" + b"x" * 200_000)
        [seen] = f.wait_seen(1)
        assert (seen.method, seen.path, seen.answered) == ("PUT", "/u", False)
        assert 100_000 <= seen.body_bytes <= 200_000
        s.settimeout(5)
        with contextlib.suppress(ConnectionResetError):  # a reset when input was left unread...
            assert s.recv(65536) == b""  # ...else closed without a byte of answer
        s.close()
