"""The accept gate's error path through a real EMFILE, and its rate-limited log.

asyncio reports each failed accept() to the loop's exception handler, which the gate takes over:
counted by errno, logged at most once a second with the lines left out, and accepting goes on
once descriptors are free. (uvloop, which tidegate runs on, never reports EMFILE: libuv closes
the waiting clients itself; the guard that keeps it from getting there is tested in
tests/http/test_open_files.py.)"""

from __future__ import annotations

import json
import logging
import socket
import sys

import pytest

from tidegate.accepting import RateLog
from tidegate.testing.process import Proc, child_env

CLIENTS = 20

SCRIPT = r"""
import asyncio, json, logging, os, sys
from tidegate.accepting import AcceptCollector, AcceptGate
from tidegate.listening import stream_listener

logging.basicConfig(level=logging.WARNING, format="%(name)s: %(message)s", stream=sys.stdout)

async def main():
    loop = asyncio.get_running_loop()
    conns = []

    class Hello(asyncio.Protocol):
        def connection_made(self, t):
            conns.append(t)
            t.write(b"x")
            gate.opened()

    gate = AcceptGate("t", stream_listener("127.0.0.1:0", 128),
                      lambda s: loop.create_server(Hello, sock=s), 1000, conns.__len__, AcceptCollector())
    gate.fd_ceiling = 1 << 30  # the guard off: accept() itself is to fail
    await gate.start()
    fillers = []
    while True:
        try:
            fillers.append(os.open("/dev/null", os.O_RDONLY))
        except OSError:
            break
    print("port", gate.listener.getsockname()[1], flush=True)
    while gate.figures.errors.get("EMFILE", 0) < 3:  # asyncio tries again once a second
        await asyncio.sleep(0.05)
    for fd in fillers:
        os.close(fd)
    while len(conns) < CLIENTS:
        await asyncio.sleep(0.05)
    print("figures", json.dumps(gate.figures.report()), flush=True)
    await asyncio.sleep(3600)

asyncio.run(main())
""".replace("CLIENTS", str(CLIENTS))


@pytest.mark.timeout(60)
def test_emfile_is_counted_logged_at_most_once_a_second_and_accepting_goes_on() -> None:
    proc = Proc(["prlimit", "--nofile=64:64", "--", sys.executable, "-c", SCRIPT], env=child_env())
    clients: list[socket.socket] = []
    try:
        port = int(proc.wait_for(r"^port (\d+)").group(1))
        for _ in range(CLIENTS):  # they wait in the backlog while accept() fails
            clients.append(socket.create_connection(("127.0.0.1", port), timeout=30))
        figures = json.loads(proc.wait_for(r"^figures (.*)$", timeout=40).group(1))
        assert figures["errors"]["EMFILE"] >= 3
        for c in clients:  # every client was accepted in the end, none dropped
            assert c.recv(1) == b"x"
        lines = [ln for ln in proc.lines if "accept() failed: EMFILE" in ln]
        # asyncio itself pauses a second after each failure: one line each, no flood
        assert 1 <= len(lines) <= figures["errors"]["EMFILE"]
        assert not [ln for ln in proc.lines if "Traceback" in ln or "out of system resource" in ln]
    finally:
        for c in clients:
            c.close()
        proc.stop()


def test_rate_log_writes_once_a_second_and_says_how_many_it_left_out(caplog) -> None:
    now = [100.0]
    log = RateLog(lambda: now[0])
    with caplog.at_level(logging.WARNING, logger="tidegate.accept"):
        written = [log.warn("x %d", i) for i in range(5)]
        now[0] += 0.999
        written.append(log.warn("x %d", 5))
        now[0] += 0.001
        written.append(log.warn("x %d", 6))
    assert written == [True, False, False, False, False, False, True]
    assert [r.getMessage() for r in caplog.records] == ["x 0", "x 6 (5 more like it left out of the log)"]
