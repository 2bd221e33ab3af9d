"""One instance under the drain runtime, as a real process on real sockets."""

from __future__ import annotations

import http.client
import json
import signal
import sys
import threading
from collections.abc import Callable
from pathlib import Path

from tidegate.instance.lifeline import DEADLINE_EXIT
from tidegate.testing.process import Proc


def start(env: dict[str, str], *args: str) -> tuple[Proc, int]:
    proc = Proc([sys.executable, "-m", "tidegate.instance", "tgapp:app", "--port", "0", *args], env=env)
    m = proc.wait_for(r"tidegate: instance listening on 127.0.0.1:(\d+) pid=\d+ version=(\S+)")
    return proc, int(m.group(1))


def get(
    conn: http.client.HTTPConnection, path: str, method: str = "GET", body: bytes | None = None
) -> http.client.HTTPResponse:
    conn.request(method, path, body=body)
    resp = conn.getresponse()
    resp.read()
    return resp


def test_sigterm_drains_then_exits_zero(write_app: Callable[..., dict[str, str]]) -> None:
    proc, port = start(write_app("5"), "--drain-window", "1.0", "--grace", "10")
    try:
        idle = http.client.HTTPConnection("127.0.0.1", port, timeout=10)  # will sit idle in keep-alive
        reused = http.client.HTTPConnection("127.0.0.1", port, timeout=10)  # will send after SIGTERM
        for c in (idle, reused):
            r = get(c, "/")
            assert r.status == 200 and r.getheader("tidegate-version") == "5"
        slow = http.client.HTTPConnection("127.0.0.1", port, timeout=10)
        slow.request("GET", "/slow?s=0.8")
        answers: list[http.client.HTTPResponse] = []
        in_flight = threading.Thread(target=lambda: answers.append(slow.getresponse()))
        in_flight.start()
        proc.wait_for(r"tgapp: slow request in the app")

        proc.signal(signal.SIGTERM)
        proc.wait_for(r"instance exiting \(SIGTERM\)")
        # A request on a pooled keep-alive connection: the drain signal, never the app.
        r = get(reused, "/echo", "POST", b"x" * 100_000)
        assert r.status == 503
        assert r.getheader("tidegate-draining") == "1" and r.getheader("connection") == "close"
        # A new connection during the drain window: the listener is still open.
        fresh = http.client.HTTPConnection("127.0.0.1", port, timeout=10)
        assert get(fresh, "/healthz").status == 503
        # The request already in flight finishes, and its connection is closed after it.
        in_flight.join(10)
        assert answers and answers[0].status == 200
        assert answers[0].getheader("connection") == "close"
        # The idle keep-alive connection is closed by the server (EOF, not a reset).
        assert idle.sock is not None
        assert idle.sock.recv(1) == b""
        assert proc.popen.wait(15) == 0
        proc.wait_for(r"instance exited: served 3, refused 1 with the drain signal, cut 0")
        for c in (idle, reused, slow, fresh):
            c.close()
    finally:
        proc.stop()


def test_grace_cuts_what_is_left_and_counts_it(write_app: Callable[..., dict[str, str]]) -> None:
    proc, port = start(write_app(), "--drain-window", "0.2", "--grace", "1")
    try:
        slow = http.client.HTTPConnection("127.0.0.1", port, timeout=10)
        slow.request("POST", "/slow?s=30", body=json.dumps({"a": 1}).encode())
        proc.wait_for(r"tgapp: slow request in the app")
        proc.signal(signal.SIGTERM)
        assert proc.popen.wait(15) == 0
        proc.wait_for(r"cut 1")
        assert slow.getresponse().status == 500  # uvicorn's answer for a cancelled app
        slow.close()
    finally:
        proc.stop()


def test_an_app_that_does_not_import_exits_2(write_app: Callable[..., dict[str, str]]) -> None:
    env = write_app()
    proc = Proc([sys.executable, "-m", "tidegate.instance", "tgapp:nope", "--port", "0"], env=env)
    try:
        assert proc.popen.wait(15) == 2
        proc.wait_for(r'Attribute "nope" not found')
    finally:
        proc.stop()


def test_a_drain_stuck_in_the_app_ends_at_its_hard_deadline(
    write_app: Callable[..., dict[str, str]], tmp_path: Path
) -> None:
    """An app that holds the event loop during the drain: uvicorn's own grace cannot fire, the
    hard deadline (grace + 1 s, kept by a thread) still ends the process."""
    proc, port = start(write_app(), "--drain-window", "0.2", "--grace", "2")
    go = tmp_path / "block-now"
    try:
        stuck = http.client.HTTPConnection("127.0.0.1", port, timeout=30)
        stuck.request("GET", f"/block?after={go}&s=120")
        proc.wait_for(r"tgapp: blocking request in the app")
        proc.signal(signal.SIGTERM)
        proc.wait_for(r"tidegate: instance exiting \(SIGTERM\)")
        go.touch()
        assert proc.popen.wait(30) == DEADLINE_EXIT
        proc.wait_for(r"tidegate: instance drain not finished 3 s after SIGTERM: exiting now")
        stuck.close()
    finally:
        proc.stop()
